"""Print one user's online features from cratedigger's Feast store (SDK).

Run after the main pipeline has applied and materialised the store::

    python examples/get_features.py --user-id 2
    python examples/get_features.py --data-dir data/features --user-id 2 --features artist_stats
    python examples/get_features.py --profile production \\
        --registry-url postgresql://postgres@127.0.0.1:5432/test --user-id 2

``--data-dir`` is the Feast data directory the pipeline used (Parquet sources; embedded, also
``registry.db`` and ``online_store.db``). Unknown user ids print nulls with status NOT_FOUND.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from featurestore.client import FeatureStoreClient  # noqa: E402
from featurestore.errors import FeatureStoreError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, read the features, print them; exit code 1 on a store error."""
    parser = argparse.ArgumentParser(description="Print one user's online features (Feast SDK).")
    parser.add_argument("--user-id", required=True, help="golden.users.user_id")
    parser.add_argument("--repo", type=Path, default=ROOT / "feature_repo")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data" / "features")
    parser.add_argument("--profile", choices=["embedded", "production"], default="embedded")
    parser.add_argument("--registry-url", default=None, help="SQL registry URL (production)")
    parser.add_argument("--redis-url", default="127.0.0.1:6379", help="Redis host:port")
    parser.add_argument("--project", default="cratedigger")
    parser.add_argument(
        "--features",
        nargs="*",
        default=None,
        help="feature service, view names or view:feature refs "
        "(default: weekly_playlist_ranking_v1)",
    )
    args = parser.parse_args(argv)
    client = FeatureStoreClient(
        args.repo,
        args.data_dir,
        args.profile,
        project=args.project,
        registry_url=args.registry_url,
        redis_url=args.redis_url,
    )
    try:
        frame = client.online_user_features([args.user_id], args.features)
    except (FeatureStoreError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    row = frame.iloc[0]
    width = max(len(str(c)) for c in frame.columns)
    for column, value in row.items():
        if hasattr(value, "__len__") and not isinstance(value, str | dict) and len(value) > 8:
            value = f"[{', '.join(f'{v:.4g}' for v in value[:8])}, ...] ({len(value)} values)"
        print(f"{column:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
