"""Print online features from cratedigger's Feast store (SDK), for a user and/or an artist.

Run after the main pipeline has applied and materialised the store (``make demo``); the ids
below are ids of the built-in sample::

    python examples/get_features.py --user-id u000001
    python examples/get_features.py --user-id u000001 --features discover_weekly_playlist
    python examples/get_features.py --data-dir data/features --artist-id a00000
    python examples/get_features.py --user-id u000001 --features user_listening_stats:total_plays \\
        user_cf_vector
    python examples/get_features.py --profile production \\
        --registry-url postgresql+psycopg://postgres@127.0.0.1:5432/test --user-id u000001

``--features`` takes a feature service (default for a user: ``weekly_playlist_ranking_v1``),
feature view names (``user_listening_stats``, ``user_cf_vector``, ``discover_weekly_playlist``,
``artist_stats``) and/or ``view:feature`` references. Each view is read by its own entity key:
``artist_stats`` by ``--artist-id`` (the default features when only ``--artist-id`` is given),
the others by ``--user-id``. ``--data-dir`` is the Feast data directory the pipeline used
(Parquet sources; embedded, also ``registry.db`` and ``online_store.db``). Unknown ids print
nulls with status NOT_FOUND. Errors (unknown feature, store not applied or materialised) print
one line and exit 1.
"""

from __future__ import annotations

import argparse
import numbers
import sys
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from featurestore.client import DEFAULT_USER_FEATURES, FeatureStoreClient  # noqa: E402
from featurestore.errors import FeatureStoreError  # noqa: E402
from featurestore.schemas import TABLES  # noqa: E402

# Feast's Milvus online-store module warns on import; this example does not use it.
warnings.filterwarnings("ignore", message='Field name "vector_enabled"', category=UserWarning)

ID_FLAGS = {"user_id": "--user-id", "artist_id": "--artist-id"}
SHOWN_VALUES = 8


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Print online features (Feast SDK).")
    parser.add_argument("--user-id", help="golden.users.user_id, e.g. u000001")
    parser.add_argument("--artist-id", help="golden.artists.artist_id, e.g. a00000")
    parser.add_argument("--repo", type=Path, default=ROOT / "feature_repo")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data" / "features")
    parser.add_argument("--profile", choices=["embedded", "production"], default="embedded")
    parser.add_argument("--registry-url", default=None, help="SQL registry URL (production)")
    parser.add_argument("--redis-url", default="127.0.0.1:6379", help="Redis host:port")
    parser.add_argument("--project", default="cratedigger")
    parser.add_argument(
        "--features",
        nargs="+",
        default=None,
        help="feature service, view names or view:feature refs (default: "
        f"{DEFAULT_USER_FEATURES} for --user-id, artist_stats for --artist-id)",
    )
    args = parser.parse_args(argv)
    if args.user_id is None and args.artist_id is None:
        parser.error("give --user-id and/or --artist-id")
    return args


def default_features(args: argparse.Namespace) -> list[str]:
    """The features to read when ``--features`` is not given."""
    features = [DEFAULT_USER_FEATURES] if args.user_id is not None else []
    return features + (["artist_stats"] if args.artist_id is not None else [])


def refs_by_key(refs: list[str]) -> dict[str, list[str]]:
    """``view:feature`` references grouped by the join key of their view."""
    grouped: dict[str, list[str]] = {}
    for ref in refs:
        view = ref.split(":")[0]
        key = TABLES[view].key if view in TABLES else "user_id"
        grouped.setdefault(key, []).append(ref)
    return grouped


def read(client: FeatureStoreClient, args: argparse.Namespace) -> list[Any]:
    """One single-row frame per entity key asked for; ValueError when an id is missing."""
    refs = client.feature_refs(args.features or default_features(args))
    ids = {"user_id": args.user_id, "artist_id": args.artist_id}
    frames = []
    for key, key_refs in refs_by_key(refs).items():
        if ids.get(key) is None:
            views = sorted({r.split(":")[0] for r in key_refs})
            raise ValueError(
                f"feature view(s) {views} are keyed by {key}: pass {ID_FLAGS.get(key, key)}"
            )
        frames.append(client.online_features(key, [ids[key]], key_refs))
    return frames


def show(value: Any) -> str:
    """A feature value on one line: long lists (vectors, playlists) cut to their start."""
    if isinstance(value, str) or not hasattr(value, "__len__") or isinstance(value, dict):
        return str(value)
    items = [_item(v) for v in value[:SHOWN_VALUES]]
    if len(value) <= SHOWN_VALUES:
        return f"[{', '.join(items)}]"
    return f"[{', '.join(items)}, ...] ({len(value)} values)"


def _item(value: Any) -> str:
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return f"{value:.4g}"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, read the features, print them; exit code 1 on a store error."""
    args = parse_args(argv)
    try:
        client = FeatureStoreClient(
            args.repo,
            args.data_dir,
            args.profile,
            project=args.project,
            registry_url=args.registry_url,
            redis_url=args.redis_url,
        )
        frames = read(client, args)
    except KeyError as error:  # unknown feature view, feature or service
        print(f"error: {error.args[0] if error.args else error}", file=sys.stderr)
        return 1
    except (FeatureStoreError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for number, frame in enumerate(frames):
        if number:
            print()
        width = max(len(str(c)) for c in frame.columns)
        for column, value in frame.iloc[0].items():
            print(f"{column:<{width}}  {show(value)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
