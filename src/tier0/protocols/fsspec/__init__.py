"""``tier0://`` for fsspec, so pandas, pyarrow, DuckDB and every fsspec user read and write tier0.

The package registers ``Tier0FileSystem`` under the ``fsspec.specs`` entry
point, so no import is needed::

    >>> import pandas as pd                                          # doctest: +SKIP
    >>> df.to_parquet("tier0://bkt/x.parquet", storage_options={"data": "/srv/t0"})
    >>> pd.read_parquet("tier0://bkt/x.parquet", storage_options={"data": "/srv/t0"})
"""

from __future__ import annotations

from tier0.protocols.fsspec._filesystem import Tier0FileSystem

__all__ = ["Tier0FileSystem"]
