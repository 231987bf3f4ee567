"""Which MLflow run of each store a journal was sent to, and how far: a journal may be sent to a second store
(`tracking sync --uri`, a resume under another tracking.uri) and later to its first one again."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .server import absolute_sqlite_uri

if TYPE_CHECKING:
    from .journal import Spool


def switch_store(spool: "Spool", uri: str) -> None:
    """Make `uri` the store the journal's state describes. The state holds one run id and one acknowledged count:
    when it names another store, that store's pair is kept under `stores` and `uri`'s own pair, if the journal was
    sent there before, comes back. Overwritten instead, a return to the first store found its run by the journal
    tag and sent it the whole journal again (every metric point twice)."""
    state = spool.state()
    old = state.get("tracking_uri")
    if not old or absolute_sqlite_uri(old) == absolute_sqlite_uri(uri):
        return
    stores = dict(state.get("stores") or {})
    if state.get("run_id"):
        stores[absolute_sqlite_uri(old)] = {"run_id": state["run_id"], "acked": int(state.get("acked", 0))}
    back = stores.pop(absolute_sqlite_uri(uri), {})
    spool.write_state(stores=stores, tracking_uri=uri, run_id=back.get("run_id"), acked=back.get("acked", 0))
