//! The bench's report: a table on stdout, and the same as a markdown section appended to
//! a file (`--output`), with what a reader needs to reproduce or discount it: the date,
//! the exact command (passwords and tokens blanked), the core count, the backend and the
//! build. Failed requests are never folded into the figures; they are shouted.

use super::load::Outcome;
use crate::admin::output::{table, thousands};
use anyhow::Context;
use reqwest::Url;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// Everything one `latchkey bench` measured, and under which conditions.
pub struct Report {
    pub command: String,
    pub cores: usize,
    pub cpu_model: Option<String>,
    pub backend: String,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub runs: Vec<Outcome>,
    /// The process whose CPU the first CPU column shows: `server`, or `gateway` for
    /// loads through the gateway.
    pub measured: &'static str,
    /// Lines printed after the table (comparisons of alternating rounds).
    pub notes: Vec<String>,
}

impl Report {
    fn headers(&self) -> [String; 9] {
        [
            "run",
            "requests/s",
            "p50 ms",
            "p99 ms",
            "requests",
            "errors",
            &format!("{} CPU", self.measured),
            "bench CPU",
            "other CPU",
        ]
        .map(str::to_owned)
    }

    fn cpu_note(&self) -> String {
        format!(
            "CPU columns: cores' worth of CPU time used during the measured window by the {}, \
             by the bench, and by everything else on the machine (PostgreSQL and any other \
             latchkey process included).",
            self.measured
        )
    }

    /// Failed requests over all runs.
    pub fn errors(&self) -> u64 {
        self.runs.iter().map(|run| run.errors.total()).sum()
    }

    fn rows(&self) -> Vec<Vec<String>> {
        self.runs
            .iter()
            .map(|run| {
                let millis = |p| {
                    run.quantile(p)
                        .map_or("-".to_owned(), |d| format!("{:.2}", d.as_secs_f64() * 1e3))
                };
                let cores = |cpu: Option<f64>| cpu.map_or("-".to_owned(), |c| format!("{c:.2}"));
                vec![
                    run.name.to_owned(),
                    thousands(run.rate().round() as u64),
                    millis(0.5),
                    millis(0.99),
                    thousands(run.latencies.len() as u64),
                    thousands(run.errors.total()),
                    cores(run.cpu.server),
                    cores(run.cpu.bench),
                    cores(run.cpu.other),
                ]
            })
            .collect()
    }

    /// The conditions, one per line.
    fn conditions(&self) -> Vec<String> {
        let machine = match &self.cpu_model {
            Some(model) => format!("{} cores ({model})", self.cores),
            None => format!("{} cores", self.cores),
        };
        let build = if cfg!(debug_assertions) {
            "debug build: NOT representative, build with --release"
        } else {
            "release build"
        };
        vec![
            format!("command: {}", self.command),
            format!("machine: {machine}; the bench and the server share these cores"),
            format!("backend: {}", self.backend),
            format!(
                "load: {} keep-alive HTTP/1.1 connections, {} s measured per run after {} s \
                 of warm-up; latchkey {}, {build}",
                self.connections,
                self.duration.as_secs(),
                self.warmup.as_secs(),
                env!("CARGO_PKG_VERSION"),
            ),
        ]
    }

    /// The loud part: one line per run that had failures.
    fn failures(&self) -> Vec<String> {
        self.runs
            .iter()
            .filter(|run| run.errors.total() > 0)
            .map(|run| {
                format!(
                    "{} requests of run `{}` FAILED ({}); its figures are not valid",
                    run.errors.total(),
                    run.name,
                    run.errors.describe()
                )
            })
            .collect()
    }

    /// The report for a terminal.
    pub fn text(&self) -> String {
        let mut out = self.conditions().join("\n");
        out.push_str("\n\n");
        let headers = self.headers();
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        out.push_str(&table(&headers, self.rows(), "no runs"));
        out.push_str(&format!("\n{}\n", self.cpu_note()));
        for note in &self.notes {
            out.push_str(&format!("\n{note}"));
        }
        for failure in self.failures() {
            out.push_str(&format!("\nWARNING: {failure}"));
        }
        out
    }

    /// The report as a markdown section dated `date`.
    pub fn markdown(&self, date: &str) -> String {
        let mut out = format!("\n## {date}: {}\n\n", self.backend);
        for line in self.conditions() {
            let line = match line.split_once("command: ") {
                Some((_, command)) => format!("command: `{command}`"),
                None => line,
            };
            out.push_str(&format!("- {line}\n"));
        }
        for failure in self.failures() {
            out.push_str(&format!("\n**WARNING: {failure}.**\n"));
        }
        let headers = self.headers();
        out.push_str(&format!("\n| {} |\n", headers.join(" | ")));
        out.push_str("| --- |");
        out.push_str(&" ---: |".repeat(headers.len() - 1));
        out.push('\n');
        for row in self.rows() {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        out.push_str(&format!("\n{}\n", self.cpu_note()));
        for note in &self.notes {
            out.push_str(&format!("\n- {note}\n"));
        }
        out
    }

    /// Appends the markdown section to `path`.
    pub fn append_to(&self, path: &Path, date: &str) -> anyhow::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.write_all(self.markdown(date).as_bytes())
            .with_context(|| format!("writing to {}", path.display()))
    }
}

/// The command line as typed, quoted for a shell, with secrets blanked: the value of
/// `--token` and the password of any URL.
pub fn command_line(args: impl IntoIterator<Item = String>) -> String {
    let mut out = Vec::new();
    let mut secret_next = false;
    for arg in args {
        let shown = if secret_next {
            "***".to_owned()
        } else if arg.starts_with("--token=") {
            "--token=***".to_owned()
        } else {
            without_password(&arg)
        };
        secret_next = arg == "--token";
        out.push(quoted(&shown));
    }
    out.join(" ")
}

fn without_password(arg: &str) -> String {
    match Url::parse(arg) {
        Ok(mut url) if url.password().is_some() => match url.set_password(Some("***")) {
            Ok(()) => url.to_string(),
            Err(()) => "***".to_owned(),
        },
        _ => arg.to_owned(),
    }
}

fn quoted(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=@,+%".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// `p50 … ms, p99 … ms, max … ms` of sorted `latencies` (nearest rank), or `None` when
/// there are none.
pub fn latency_summary(latencies: &[Duration]) -> Option<String> {
    if latencies.is_empty() {
        return None;
    }
    let at = |q: f64| {
        let index = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index].as_secs_f64() * 1000.0
    };
    Some(format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    ))
}

/// The processor's name, from `/proc/cpuinfo` (Linux).
pub fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
}

/// The medians over the runs whose names start with `kind`: requests/s, and CPU
/// microseconds per request of the measured process and of the bench.
fn medians(runs: &[Outcome], kind: &str) -> Option<(f64, Option<f64>, Option<f64>)> {
    let of: Vec<&Outcome> = runs.iter().filter(|r| r.name.starts_with(kind)).collect();
    let median = |mut values: Vec<f64>| -> Option<f64> {
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied()
    };
    let per_request = |cores: fn(&Outcome) -> Option<f64>| {
        median(
            of.iter()
                .filter(|r| r.rate() > 0.0)
                .filter_map(|r| cores(r).map(|c| c / r.rate() * 1e6))
                .collect(),
        )
    };
    Some((
        median(of.iter().map(|r| r.rate()).collect())?,
        per_request(|r| r.cpu.server),
        per_request(|r| r.cpu.bench),
    ))
}

/// One line comparing the rounds of `candidate` with those of `baseline` (run names
/// start with them): median requests/s and their ratio, and the median CPU per request
/// of `measured` (the server or the gateway) and of the bench. `None` when either has
/// no run.
pub fn comparison(
    runs: &[Outcome],
    baseline: &str,
    candidate: &str,
    measured: &str,
) -> Option<String> {
    let (base_rate, base_cpu, base_bench) = medians(runs, baseline)?;
    let (rate, cpu, bench) = medians(runs, candidate)?;
    let rounds = runs
        .iter()
        .filter(|r| r.name.starts_with(candidate))
        .count();
    let micros = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0} µs"));
    let ratio = if base_rate > 0.0 {
        rate / base_rate
    } else {
        0.0
    };
    Some(format!(
        "{candidate} against {baseline}, medians of {rounds} alternating rounds: {} vs {} \
         requests/s ({ratio:.2}×); {measured} CPU per request {} vs {}; bench CPU per \
         request {} vs {}",
        thousands(rate.round() as u64),
        thousands(base_rate.round() as u64),
        micros(cpu),
        micros(base_cpu),
        micros(bench),
        micros(base_bench),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::load::{CpuUse, Errors};

    fn run(name: &str, requests: usize, server: f64) -> Outcome {
        Outcome {
            name: name.to_owned(),
            latencies: vec![Duration::from_millis(1); requests],
            errors: Errors::default(),
            window: Duration::from_secs(1),
            cpu: CpuUse {
                bench: Some(0.5),
                server: Some(server),
                other: None,
            },
        }
    }

    #[test]
    fn a_comparison_takes_the_median_round_of_each_kind() {
        let runs = [
            run("plain, round 1", 1000, 1.0),
            run("fancy, round 1", 400, 1.0),
            run("plain, round 2", 2000, 1.0),
            run("fancy, round 2", 500, 1.0),
            run("plain, round 3", 1500, 1.0),
            run("fancy, round 3", 10, 1.0),
        ];
        assert_eq!(
            comparison(&runs, "plain", "fancy", "gateway").unwrap(),
            "fancy against plain, medians of 3 alternating rounds: 400 vs 1,500 requests/s \
             (0.27×); gateway CPU per request 2500 µs vs 667 µs; bench CPU per request \
             1250 µs vs 333 µs"
        );
        assert_eq!(comparison(&runs, "plain", "other", "server"), None);
    }

    #[test]
    fn the_command_line_is_quoted_and_keeps_no_secret() {
        let args = [
            "latchkey",
            "bench",
            "--database-url",
            "postgres://bench:hunter2@127.0.0.1:5432/latchkey_bench",
            "--token",
            "lk_ak_secret",
            "--output",
            "my results.md",
        ];
        assert_eq!(
            command_line(args.map(String::from)),
            "latchkey bench --database-url 'postgres://bench:***@127.0.0.1:5432/latchkey_bench' \
             --token '***' --output 'my results.md'"
        );
        assert_eq!(
            command_line(["latchkey", "--token=lk_ak_x"].map(String::from)),
            "latchkey '--token=***'"
        );
    }

    #[test]
    fn large_numbers_get_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
