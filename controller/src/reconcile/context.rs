//! What every reconcile is handed: the store, events, the world, the
//! fence, the clock, and the optional transplant world and metrics.

use std::sync::Arc;
use std::time::Duration;

use coord::Coordination;
use reconcilers::clock::{Clock, SystemClock, rfc3339};
use reconcilers::operation::POLL;

use crate::runtime::events::{Event, Events};
use crate::store::{Fence, Store};

/// Everything a reconcile needs.
pub struct Context<W> {
    pub store: Store,
    pub events: Events,
    pub world: W,
    pub fence: Option<Fence>,
    pub clock: Arc<dyn Clock>,
    /// How often completion checks poll (scaled down in the simulator).
    pub poll: Duration,
    /// The transplant strategy's world; without it only rolling upgrades run.
    pub transplant: Option<Arc<dyn reconcilers::transplant::TransplantAct>>,
    /// Step durations and event counts for `/metrics` (the daemon sets it).
    pub metrics: Option<crate::runtime::metrics::Metrics>,
}

impl<W> Context<W> {
    pub(crate) fn coord(&self) -> &Arc<dyn Coordination> {
        self.store.coord()
    }

    pub(crate) fn now(&self) -> String {
        rfc3339(self.clock.now())
    }

    pub(crate) async fn event(&self, e: Event) {
        match self.events.record(&e, self.fence.as_ref()).await {
            Ok(_) => {
                if let Some(m) = &self.metrics {
                    m.event_recorded(e.event_type.as_str());
                }
            }
            Err(err) => tracing::warn!(error = %err, "could not record event"),
        }
    }
}

/// Make a context with the wall clock.
pub fn context<W>(
    store: Store,
    world: W,
    fence: Option<Fence>,
    poll: Option<Duration>,
) -> Context<W> {
    let events = Events::new(store.coord().clone());
    Context {
        store,
        events,
        world,
        fence,
        clock: Arc::new(SystemClock),
        poll: poll.unwrap_or(POLL),
        transplant: None,
        metrics: None,
    }
}
