//! Metrics that cost a request a few relaxed atomic additions and are turned into the
//! Prometheus text format only when scraped (docs/OPERATIONS.md, "Metrics").
//!
//! Policy: the hot path never formats, allocates or takes a write lock. A [`Histogram`]
//! is an array of atomic buckets; labelled cells ([`Cells`]) are found under a read
//! lock by a short key and created once. At scrape time a component's [`Collector`]
//! reads its cells and writes families through prometheus-client's encoder, which owns
//! the exposition format (names, escaping, `_total`, `le`, `# EOF`).

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::registry::Registry;
use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

pub use prometheus_client::collector::Collector;
pub use prometheus_client::encoding::DescriptorEncoder as Encoder;
pub use prometheus_client::metrics::MetricType;

/// The `Content-Type` of a scrape's answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the duration buckets, in nanoseconds: from 50 µs, because most of
/// latchkey's answers take well under a millisecond, to 10 s (then `+Inf`).
pub const BUCKETS_NANOS: [u64; 16] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    10_000_000_000,
];

/// A duration histogram with the buckets of [`BUCKETS_NANOS`] and `+Inf`.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_NANOS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Counts one observation.
    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let index = BUCKETS_NANOS
            .iter()
            .position(|bound| nanos <= *bound)
            .unwrap_or(BUCKETS_NANOS.len());
        if let Some(bucket) = self.buckets.get(index) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }
}

/// A counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Cells by label key, created on first use and never removed (label sets are
/// bounded: route templates, methods, statuses, results).
#[derive(Debug)]
pub struct Cells<K, V> {
    map: RwLock<HashMap<K, Arc<V>, foldhash::fast::RandomState>>,
}

impl<K, V> Default for Cells<K, V> {
    fn default() -> Self {
        Self {
            map: RwLock::new(HashMap::default()),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Default> Cells<K, V> {
    /// The cell of `key`, made on first use.
    pub fn get<Q>(&self, key: &Q) -> Arc<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized + ToOwned<Owned = K>,
    {
        if let Some(cell) = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            return cell.clone();
        }
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.to_owned())
            .or_default()
            .clone()
    }

    /// Every cell, sorted by key for a stable exposition.
    pub fn snapshot(&self) -> Vec<(K, Arc<V>)>
    where
        K: Ord,
    {
        let mut cells: Vec<(K, Arc<V>)> = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        cells.sort_by(|a, b| a.0.cmp(&b.0));
        cells
    }
}

/// Label values with `\\`, `"` and line feeds escaped, as the text format wants: the
/// encoder writes values as given.
fn escaped<'a>(labels: &'a [(&'a str, &'a str)]) -> Vec<(&'a str, Cow<'a, str>)> {
    labels
        .iter()
        .map(|(name, value)| {
            let value = if value.contains(['\\', '"', '\n']) {
                Cow::Owned(
                    value
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n"),
                )
            } else {
                Cow::Borrowed(*value)
            };
            (*name, value)
        })
        .collect()
}

/// Writes one counter family: one sample per label set.
pub fn counters<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (&'a [(&'a str, &'a str)], u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in samples {
        if labels.is_empty() {
            family.encode_counter::<NoLabelSet, _, u64>(&value, None)?;
        } else {
            family
                .encode_family(&escaped(labels))?
                .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
        }
    }
    Ok(())
}

/// Writes one gauge family.
pub fn gauges<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (&'a [(&'a str, &'a str)], i64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in samples {
        if labels.is_empty() {
            family.encode_gauge(&value)?;
        } else {
            family
                .encode_family(&escaped(labels))?
                .encode_gauge(&value)?;
        }
    }
    Ok(())
}

/// Writes one gauge without labels.
pub fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    gauges(encoder, name, help, [(&[][..], value)])
}

/// Writes one histogram family, in seconds.
pub fn histograms<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (&'a [(&'a str, &'a str)], &'a Histogram)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, histogram) in samples {
        let mut buckets = Vec::with_capacity(BUCKETS_NANOS.len() + 1);
        let mut count = 0;
        for (index, bucket) in histogram.buckets.iter().enumerate() {
            let n = bucket.load(Ordering::Relaxed);
            count += n;
            let bound = BUCKETS_NANOS
                .get(index)
                .map_or(f64::MAX, |nanos| *nanos as f64 / 1e9);
            buckets.push((bound, n));
        }
        let sum = histogram.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        if labels.is_empty() {
            family.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        } else {
            family
                .encode_family(&escaped(labels))?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
    }
    Ok(())
}

/// Renders what `collector` writes, as a scrape's body.
pub fn render(collector: Arc<dyn Collector>) -> String {
    #[derive(Debug)]
    struct Shared(Arc<dyn Collector>);
    impl Collector for Shared {
        fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            self.0.encode(encoder)
        }
    }
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Shared(collector)));
    let mut text = String::new();
    // Writing to a String cannot fail; a collector's own error leaves a partial body,
    // which Prometheus reports as a failed scrape.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

/// Requests by route, method and status, and their durations by route: what the server
/// (route templates) and the gateway (route prefixes) both count for every request.
#[derive(Debug, Default)]
pub struct RouteMetrics {
    routes: Cells<String, RouteCell>,
}

#[derive(Debug, Default)]
struct RouteCell {
    requests: Cells<(&'static str, u16), Counter>,
    duration: Histogram,
}

impl RouteMetrics {
    /// Counts a request of `method` to `route` answered `status` after `elapsed`.
    pub fn record(&self, route: &str, method: &http::Method, status: u16, elapsed: Duration) {
        let cell = self.routes.get(route);
        cell.requests.get(&(method_label(method), status)).inc();
        cell.duration.observe(elapsed);
    }

    /// Writes the counter family `requests` and the histogram family `duration`, each
    /// with its help text.
    pub fn encode(
        &self,
        encoder: &mut Encoder,
        requests: (&str, &str),
        duration: (&str, &str),
    ) -> Result<(), std::fmt::Error> {
        let routes = self.routes.snapshot();
        let mut counted = Vec::new();
        for (route, cell) in &routes {
            for ((method, status), counter) in cell.requests.snapshot() {
                counted.push((route.as_str(), method, status.to_string(), counter.get()));
            }
        }
        let rows: Vec<[(&str, &str); 3]> = counted
            .iter()
            .map(|(route, method, status, _)| {
                [("route", *route), ("method", *method), ("status", status)]
            })
            .collect();
        counters(
            encoder,
            requests.0,
            requests.1,
            rows.iter().zip(&counted).map(|(row, c)| (&row[..], c.3)),
        )?;
        let route_rows: Vec<[(&str, &str); 1]> = routes
            .iter()
            .map(|(route, _)| [("route", route.as_str())])
            .collect();
        histograms(
            encoder,
            duration.0,
            duration.1,
            route_rows
                .iter()
                .zip(&routes)
                .map(|(row, (_, cell))| (&row[..], &cell.duration)),
        )
    }
}

/// Methods outside the usual ones share a label, so a client cannot grow the label set.
fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default)]
    struct Sample {
        requests: Cells<(String, u16), Counter>,
        duration: Histogram,
    }

    impl Collector for Sample {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let cells = self.requests.snapshot();
            let labels: Vec<(String, String)> = cells
                .iter()
                .map(|((route, status), _)| (route.clone(), status.to_string()))
                .collect();
            let rows: Vec<[(&str, &str); 2]> = labels
                .iter()
                .map(|(route, status)| [("route", route.as_str()), ("status", status.as_str())])
                .collect();
            counters(
                &mut encoder,
                "demo_requests",
                "Requests.",
                rows.iter()
                    .zip(&cells)
                    .map(|(row, (_, cell))| (&row[..], cell.get())),
            )?;
            histograms(
                &mut encoder,
                "demo_duration_seconds",
                "Durations.",
                [(&[][..], &self.duration)],
            )?;
            gauge(&mut encoder, "demo_depth", "Depth.", 7)
        }
    }

    #[test]
    fn cells_count_and_render_in_the_prometheus_format() {
        let sample = Arc::new(Sample::default());
        sample.requests.get(&("/v1/{id}".to_owned(), 200)).inc();
        sample.requests.get(&("/v1/{id}".to_owned(), 200)).inc();
        sample.requests.get(&("/a\"b\\c\nd".to_owned(), 404)).inc();
        sample.duration.observe(Duration::from_micros(30));
        sample.duration.observe(Duration::from_micros(700));
        sample.duration.observe(Duration::from_secs(60));
        assert_eq!(sample.duration.count(), 3);
        let text = render(sample);
        assert!(text.contains("# TYPE demo_requests counter"), "{text}");
        assert!(
            text.contains("demo_requests_total{route=\"/v1/{id}\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("demo_requests_total{route=\"/a\\\"b\\\\c\\nd\",status=\"404\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("demo_duration_seconds_bucket{le=\"0.00005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("demo_duration_seconds_bucket{le=\"0.001\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("demo_duration_seconds_bucket{le=\"+Inf\"} 3"),
            "{text}"
        );
        assert!(text.contains("demo_duration_seconds_count 3"), "{text}");
        assert!(text.contains("demo_depth 7"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
