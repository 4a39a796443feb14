//! The metrics as CloudWatch Embedded Metric Format (EMF) lines. Nothing can scrape a Lambda
//! function, but CloudWatch Logs turns a JSON log line in EMF into metrics, with no agent and no
//! API call. So at the end of every invocation the function writes, to stdout, what the
//! Prometheus recorder counted during that invocation: the same metric names, with their labels
//! as dimensions.
//!
//! One line per label set (EMF takes one value per dimension in a line, so
//! `cognito_resend_jobs_total{outcome="sent"}` and `{outcome="failed"}` need a line each):
//! counters as their increase over the invocation (series that did not move are left out),
//! gauges as their value at its end. A labelled series is published with its labels as
//! dimensions and also with none (CloudWatch then keeps the total over the labels, which alarms
//! watch: `cognito_resend_stopped_total` whatever the reason). The request-duration histogram is not sent (an EMF value is
//! a sample, not a bucket count); Lambda's own Duration metric and the logs cover timing.
//!
//! The values come from the recorder's own exposition text, so the names and labels are exactly
//! those `/metrics` and `--pushgateway` show; the process metrics and the build's info, which
//! a scrape reads, are left out ([`published`]).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// The CloudWatch namespace of every metric.
pub(crate) const NAMESPACE: &str = "cognito-resend";

/// A series' labels, sorted by name.
type Labels = Vec<(String, String)>;

/// The counters and gauges of one exposition.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Snapshot {
    counters: BTreeMap<(String, Labels), f64>,
    gauges: BTreeMap<(String, Labels), f64>,
}

/// Reads the counters and gauges of a Prometheus text exposition (as
/// `metrics-exporter-prometheus` renders it: a `# TYPE` line before each metric's samples).
pub(crate) fn parse(exposition: &str) -> Snapshot {
    let mut types: BTreeMap<&str, &str> = BTreeMap::new();
    let mut snapshot = Snapshot::default();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (words.next(), words.next()) {
                types.insert(name, kind);
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((name, labels, value)) = sample(line) else {
            continue;
        };
        if !published(&name) {
            continue;
        }
        let map = match types.get(name.as_str()) {
            Some(&"counter") => &mut snapshot.counters,
            Some(&"gauge") => &mut snapshot.gauges,
            _ => continue,
        };
        map.insert((name, labels), value);
    }
    snapshot
}

/// Whether a metric goes out as EMF: the tool's own counters and gauges, not the standard
/// process metrics nor `cognito_resend_build_info`, which are for scrapes. Lambda reports a
/// function's memory and duration itself, and every EMF metric is a CloudWatch custom metric,
/// billed per metric.
fn published(name: &str) -> bool {
    name.starts_with("cognito_resend_") && name != crate::telemetry::metrics::BUILD_INFO
}

/// One sample line: `name{a="x",b="y"} value`.
fn sample(line: &str) -> Option<(String, Labels, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.trim().parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        None => (series.to_owned(), Vec::new()),
        Some((name, rest)) => (name.to_owned(), labels(rest.strip_suffix('}')?)?),
    };
    Some((name, labels, value))
}

/// `a="x",b="y\"z"` as sorted pairs, escapes undone.
fn labels(mut text: &str) -> Option<Labels> {
    let mut out = Vec::new();
    while !text.is_empty() {
        let (key, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        out.push((key.trim_start_matches(',').to_owned(), value));
        text = rest[end + 1..].trim_start_matches(',');
    }
    out.sort();
    Some(out)
}

/// The EMF lines for what changed from `before` to `now`, at `timestamp_ms`, each carrying
/// `properties` (searchable in CloudWatch Logs Insights, not dimensions).
pub(crate) fn lines(
    before: &Snapshot,
    now: &Snapshot,
    timestamp_ms: i64,
    properties: &Map<String, Value>,
) -> Vec<String> {
    let mut by_labels: BTreeMap<&Labels, Vec<(&str, &str, f64)>> = BTreeMap::new();
    for ((name, labels), value) in &now.counters {
        let was = before
            .counters
            .get(&(name.clone(), labels.clone()))
            .copied()
            .unwrap_or(0.0);
        if *value > was {
            by_labels
                .entry(labels)
                .or_default()
                .push((name, "Count", value - was));
        }
    }
    for ((name, labels), value) in &now.gauges {
        by_labels
            .entry(labels)
            .or_default()
            .push((name, "None", *value));
    }
    by_labels
        .into_iter()
        .map(|(labels, metrics)| {
            let mut line = properties.clone();
            let keys: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
            // Each labelled series is also published without dimensions: the total over its
            // labels, which an alarm can watch (an alarm cannot sum over dimension values).
            let dimensions = if keys.is_empty() {
                json!([[]])
            } else {
                json!([keys, []])
            };
            for (k, v) in labels {
                line.insert(k.clone(), Value::String(v.clone()));
            }
            let mut defined = Vec::new();
            for (name, unit, value) in metrics {
                line.insert(name.to_owned(), json!(value));
                defined.push(json!({"Name": name, "Unit": unit}));
            }
            line.insert(
                "_aws".into(),
                json!({
                    "Timestamp": timestamp_ms,
                    "CloudWatchMetrics": [{
                        "Namespace": NAMESPACE,
                        "Dimensions": dimensions,
                        "Metrics": defined,
                    }],
                }),
            );
            Value::Object(line).to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"# TYPE cognito_resend_jobs_total counter
cognito_resend_jobs_total{source="sqs",outcome="sent"} 3
cognito_resend_jobs_total{source="sqs",outcome="failed"} 1
# TYPE cognito_resend_rate_limit_per_second gauge
cognito_resend_rate_limit_per_second 10
"#;

    const NOW: &str = r#"# HELP cognito_resend_jobs_total Jobs that reached an outcome.
# TYPE cognito_resend_jobs_total counter
cognito_resend_jobs_total{source="sqs",outcome="sent"} 5
cognito_resend_jobs_total{source="sqs",outcome="failed"} 1
cognito_resend_jobs_total{source="sqs",outcome="invalid"} 2
# TYPE cognito_resend_attempts_total counter
cognito_resend_attempts_total{result="ok"} 4
# TYPE cognito_resend_rate_limit_per_second gauge
cognito_resend_rate_limit_per_second 7.5
# TYPE cognito_resend_request_duration_seconds histogram
cognito_resend_request_duration_seconds_bucket{le="0.005"} 1
cognito_resend_request_duration_seconds_sum 0.01
"#;

    fn parsed(line: &str) -> Value {
        serde_json::from_str(line).expect("an EMF line is JSON")
    }

    #[test]
    fn one_line_per_label_set_with_the_increase_of_each_counter() {
        let mut props = Map::new();
        props.insert("event".into(), json!("sqs"));
        let lines = lines(&parse(BEFORE), &parse(NOW), 1_800_000_000_000, &props);
        let lines: Vec<Value> = lines.iter().map(|l| parsed(l)).collect();
        // No labels (the rate gauge), result=ok, outcome=invalid, outcome=sent; `failed` did
        // not move.
        assert_eq!(lines.len(), 4, "{lines:#?}");
        let sent = lines
            .iter()
            .find(|l| l["outcome"] == "sent")
            .expect("a line for outcome=sent");
        assert_eq!(sent["cognito_resend_jobs_total"], json!(2.0));
        assert_eq!(sent["source"], "sqs");
        assert_eq!(sent["event"], "sqs");
        let directive = &sent["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], json!([["outcome", "source"], []]));
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "cognito_resend_jobs_total", "Unit": "Count"}])
        );
        assert_eq!(sent["_aws"]["Timestamp"], json!(1_800_000_000_000_i64));
        let bare = lines
            .iter()
            .find(|l| l.get("outcome").is_none() && l.get("result").is_none());
        let bare = bare.expect("a line without dimensions");
        assert_eq!(bare["cognito_resend_rate_limit_per_second"], json!(7.5));
        assert_eq!(
            bare["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([[]])
        );
        assert!(lines.iter().all(|l| {
            l.get("cognito_resend_request_duration_seconds_sum")
                .is_none()
        }));
    }

    #[test]
    fn label_values_are_unescaped() {
        let s = parse(
            "# TYPE cognito_resend_m counter\ncognito_resend_m{reason=\"a \\\"b\\\"\",z=\"1\"} 2\n",
        );
        let (key, value) = s.counters.iter().next().unwrap();
        assert_eq!(
            key.1,
            vec![
                ("reason".into(), "a \"b\"".into()),
                ("z".into(), "1".into())
            ]
        );
        assert_eq!(*value, 2.0);
    }

    #[test]
    fn the_process_metrics_and_the_build_info_are_not_published() {
        let s = parse(
            "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 4e7\n\
             # TYPE cognito_resend_build_info gauge\n\
             cognito_resend_build_info{version=\"0.1.0\",arch=\"x86_64\",os=\"linux\"} 1\n\
             # TYPE cognito_resend_in_flight gauge\ncognito_resend_in_flight 3\n",
        );
        let names: Vec<&str> = s.gauges.keys().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["cognito_resend_in_flight"]);
    }
}
