"""The webhook dispatcher: claim due deliveries, send them, record what happened.

- One loop per worker takes turns. A turn is ONE short write transaction: it records the
  results of the sends finished since the last turn, returns expired leases, and claims due
  deliveries for the endpoints that have room. No transaction stays open across a network call.
- A claim is a lease. On PostgreSQL the due rows are locked `FOR UPDATE SKIP LOCKED` and then
  leased by primary key, so workers on many machines never claim one delivery twice; on SQLite,
  one writer at a time, one conditional `UPDATE … RETURNING` finds and leases them. A lease
  that runs out (its worker died) makes the delivery due again: every event is delivered at
  least once.
- Sending runs beside the loop. Each endpoint has a local queue of leased deliveries and at
  most `max_concurrency` requests in flight; a finished send starts the next one at once. An
  endpoint's queue holds no more than it can send well within the lease, sized from its recent
  response times, so a slow partner holds few leases and never the slots of the others.
- Deliveries about one resource to one endpoint go out one at a time in commit order: a
  delivery is only claimed when no earlier one for the same endpoint and resource is pending
  or being delivered.
- A commit that creates deliveries wakes the dispatchers (in this process directly, in others
  through PostgreSQL's NOTIFY) with the endpoints concerned; between wake-ups the loop looks
  for due work (retries, anything missed) every `poll_seconds`, less often while idle.
- Each turn, after its claims, reads the versions of the endpoints it holds work for and reads
  again those that changed: a PATCH or a rotated secret applies to every delivery claimed
  after it committed, and to those still waiting in the worker's queues.
"""

from coverline.webhooks.dispatcher.queues import (
    DispatchSettings,
    EndpointConfig,
    EndpointQueue,
)
from coverline.webhooks.dispatcher.sending import USER_AGENT, retry_after_seconds
from coverline.webhooks.dispatcher.turns import Dispatcher, disable_endpoint

__all__ = [
    "USER_AGENT",
    "DispatchSettings",
    "Dispatcher",
    "EndpointConfig",
    "EndpointQueue",
    "disable_endpoint",
    "retry_after_seconds",
]
