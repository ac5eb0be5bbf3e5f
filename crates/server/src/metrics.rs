//! Prometheus metrics (text exposition format via `prometheus-client`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConclusionLabel {
    pub conclusion: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub queue_depth: Gauge,
    pub agents: Gauge,
    pub job_duration: Family<ConclusionLabel, Histogram>,
    pub deliveries: Family<OutcomeLabel, Counter>,
    pub log_bytes: Counter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("hangar");
        let queue_depth = Gauge::default();
        let agents = Gauge::default();
        let job_duration = Family::<ConclusionLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0])
        });
        let deliveries = Family::<OutcomeLabel, Counter>::default();
        let log_bytes = Counter::default();
        registry.register(
            "queue_depth",
            "Jobs queued and waiting for an agent",
            queue_depth.clone(),
        );
        registry.register(
            "agents_connected",
            "Agents that polled recently",
            agents.clone(),
        );
        registry.register(
            "job_duration_seconds",
            "Job run time by conclusion",
            job_duration.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries by outcome",
            deliveries.clone(),
        );
        registry.register("log_bytes", "Log bytes stored", log_bytes.clone());
        Metrics {
            registry,
            queue_depth,
            agents,
            job_duration,
            deliveries,
            log_bytes,
        }
    }

    pub fn delivery(&self, outcome: &str) {
        self.deliveries
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
