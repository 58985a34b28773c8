"""Spark MLlib ALS (implicit feedback) behind the :class:`embeddings.cf.CFModel` contract.

The weighted user x item CSR matrix that every CF model receives becomes a Spark DataFrame
``(user, item, rating)`` of its non-zero entries; ``pyspark.ml.recommendation.ALS`` with
``implicitPrefs=True`` factorises it; the user and item factors come back as numpy arrays
ordered by row / column index. Scoring, similar items, saving and the Milvus export are then
those of every factor model (:class:`embeddings.cf._FactorModel`), so a fitted MLlib model is
used exactly like implicit's ALS. It is the CF trainer for data beyond one machine: with
``SPARK_MASTER=spark://host:7077`` (or ``yarn``, ``k8s://...``) the fit runs on the cluster.

How MLlib's objective relates to implicit's (both Hu, Koren & Volinsky 2008):

=====================  ================================  ======================================
                       implicit ``AlternatingLeastSq.``  MLlib ``ALS(implicitPrefs=True)``
=====================  ================================  ======================================
confidence of a play   ``c = w`` (the weighted value)    ``c = 1 + alpha * w``
L2 penalty of a row    ``regularization`` (fixed)        ``regParam * n`` (n = the row's plays,
                                                         ALS-WR weighting)
=====================  ================================  ======================================

So ``config.regularization`` means ``regParam`` here, scaled by each user's and item's number
of plays; a value tuned for implicit does not carry over (see :data:`MLLIB_PRESET_CHANGES`).
MLlib's ``alpha`` is :data:`DEFAULT_ALPHA` (``c = 1 + w``: implicit's confidence plus one);
``config.alpha`` stays the weighting's scale, as for every model.

Example usage::

    model = MLlibALSModel(CF_PRESETS["als"].with_(**MLLIB_PRESET_CHANGES))
    model.fit(interactions.weighted(model.config))
    items, scores = model.recommend(0, user_items[0], n=10)
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import sparse

from embeddings.cf import MODEL_CLASSES, CFConfig, _FactorModel

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)

KIND = "mllib_als"
# MLlib's confidence is 1 + alpha * w; 1.0 keeps implicit's confidence w (plus one).
DEFAULT_ALPHA = 1.0
# regParam for CF_PRESETS["als"] (64 factors, 15 iterations, log weighting alpha 5). MLlib
# scales it by each row's plays, so implicit's 5.0 maps to about 5 / 40 (HetRec's mean plays
# per training user) = 0.12. Checked on a HetRec validation split carved from train
# (evaluation.metrics.validation_split), NDCG@10 against implicit's 0.160: regParam
# 0.05 / 0.1 / 0.3 / 1.0 -> 0.163 / 0.166 / 0.178 / 0.190. 0.1 is kept: the same model as
# implicit's preset (on the 20% test split 0.2235 vs 0.2183). A larger regParam is better
# (1.0: 0.2532 on test) but is then a differently tuned model, not implicit's peer.
MLLIB_PRESET_CHANGES: dict[str, Any] = {"regularization": 0.1}
APP_NAME = "cratedigger-mllib-als"


def spark_session(master: str | None = None) -> SparkSession:
    """The project's quiet SparkSession (:func:`warehouse.spark.spark_session`) for MLlib."""
    from warehouse.spark import spark_session as session

    return session(master, APP_NAME)


def ratings_frame(spark: SparkSession, user_items: sparse.csr_matrix) -> DataFrame:
    """The non-zero entries of ``user_items`` as a Spark DataFrame ``(user, item, rating)``.

    ``user`` and ``item`` are the row and column indices (int32), ``rating`` the weighted
    value (float32). Transferred through Arrow.
    """
    coo = sparse.coo_matrix(user_items)
    if coo.shape[0] > np.iinfo(np.int32).max or coo.shape[1] > np.iinfo(np.int32).max:
        raise ValueError(f"MLlib ALS takes int32 ids; the matrix is {coo.shape}")
    frame = pd.DataFrame(
        {
            "user": coo.row.astype(np.int32),
            "item": coo.col.astype(np.int32),
            "rating": coo.data.astype(np.float32),
        }
    )
    return spark.createDataFrame(frame)


def factors_array(factors: DataFrame, rows: int, rank: int) -> np.ndarray:
    """MLlib's ``(id, features)`` factor DataFrame as a float32 ``(rows, rank)`` array by id.

    Ids MLlib never saw (a user or item without plays) get a zero vector, as implicit gives
    them.
    """
    frame = factors.toPandas()
    array = np.zeros((rows, rank), dtype=np.float32)
    if len(frame):
        ids = frame["id"].to_numpy(dtype=np.int64)
        array[ids] = np.stack(frame["features"].to_numpy()).astype(np.float32)
    return array


class MLlibALSModel(_FactorModel):
    """Spark MLlib ALS with implicit preferences; user and item factors as numpy arrays.

    Parameters
    ----------
    config
        ``factors`` -> ``rank``, ``regularization`` -> ``regParam`` (scaled by the number of
        plays of each row, see the module docstring), ``iterations`` -> ``maxIter``,
        ``seed`` -> ``seed``. The weighting has been applied to the matrix :meth:`fit` gets.
    num_threads
        Ignored (the parallelism is Spark's: the master's cores); accepted so that
        :func:`embeddings.cf.make_model` builds every model alike.
    alpha
        MLlib's confidence scale (``c = 1 + alpha * w``); not part of ``config`` (whose
        ``alpha`` scales the weighting), so keep the default for versioned models.
    spark
        The session to fit in; default :func:`spark_session` at fit time.
    blocks
        MLlib's user and item blocks (its unit of parallel work); default MLlib's (10). On
        HetRec with ``local[2]`` 2, 4 and 10 blocks fitted in the same time within the noise
        of a loaded machine; raise it with the cluster's cores.
    """

    kind = KIND

    def __init__(
        self,
        config: CFConfig,
        num_threads: int = 0,
        *,
        alpha: float = DEFAULT_ALPHA,
        spark: SparkSession | None = None,
        blocks: int | None = None,
    ) -> None:
        super().__init__(config)
        if alpha < 0:
            raise ValueError(f"MLlib ALS alpha must be >= 0, got {alpha}")
        if blocks is not None and blocks < 1:
            raise ValueError(f"MLlib ALS blocks must be >= 1, got {blocks}")
        self.alpha = alpha
        self.blocks = blocks
        self._spark = spark
        self.spark_seconds: dict[str, float] = {}

    def fit(self, user_items: sparse.csr_matrix) -> None:
        """Fit on a weighted user x item CSR matrix (entries > 0 are plays).

        Raises
        ------
        ValueError
            The matrix has no entry, or an entry <= 0 (MLlib would read it as "not played").
        """
        matrix = sparse.csr_matrix(user_items)
        if matrix.nnz == 0:
            raise ValueError("MLlib ALS got an empty matrix: nothing to fit")
        if (matrix.data <= 0).any():
            raise ValueError(
                f"{int((matrix.data <= 0).sum())} weighted plays are <= 0; MLlib ALS reads them "
                "as 'not played': use a weighting that keeps plays positive"
            )
        spark = self._spark or spark_session()
        started = time.perf_counter()
        ratings = ratings_frame(spark, matrix)
        fitted = self._estimator().fit(ratings)
        fit_done = time.perf_counter()
        rows, columns = matrix.shape
        self._users = factors_array(fitted.userFactors, rows, self.config.factors)
        self._items = factors_array(fitted.itemFactors, columns, self.config.factors)
        self.spark_seconds = {
            "fit": fit_done - started,
            "collect_factors": time.perf_counter() - fit_done,
        }
        logger.info(
            "MLlib ALS on %d x %d (%d plays, master %s): fit %.1fs, factors collected in %.1fs",
            rows,
            columns,
            matrix.nnz,
            spark.sparkContext.master,
            self.spark_seconds["fit"],
            self.spark_seconds["collect_factors"],
        )

    def _estimator(self) -> Any:
        from pyspark.ml.recommendation import ALS

        blocks = {"numUserBlocks": self.blocks, "numItemBlocks": self.blocks} if self.blocks else {}
        return ALS(
            userCol="user",
            itemCol="item",
            ratingCol="rating",
            implicitPrefs=True,
            rank=self.config.factors,
            regParam=self.config.regularization,
            maxIter=self.config.iterations,
            alpha=self.alpha,
            seed=self.config.seed,
            **blocks,
        )


# The ``mllib_als`` kind: embeddings.cf imports this module at its end (and lists the kind in
# MODEL_KINDS), so make_model and CFModel.load find it whichever module is imported first.
MODEL_CLASSES.setdefault(KIND, MLlibALSModel)
