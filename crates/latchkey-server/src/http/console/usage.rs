//! A token's usage as charts drawn on the server: requests per day over the last 30
//! days, stacked by route and by client address, as inline SVG (no script, and nothing
//! the Content-Security-Policy has to allow).

use super::ConsoleError;
use super::pages::{empty, raw};
use crate::service::state::AppState;
use latchkey_core::{Timestamp, TokenId};
use maud::{Markup, html};
use std::collections::BTreeMap;
use std::fmt::Write;

const DAYS: i64 = 30;
const DAY_MS: i64 = 86_400_000;
/// Series beyond this many are summed as "other".
const MAX_SERIES: usize = 6;
const COLOURS: [&str; 7] = [
    "#1f5fbf", "#e07b00", "#1e7d3a", "#b3261e", "#6a3fb5", "#00838f", "#8a8f98",
];

/// Counts per day (index 0 = 29 days ago) per series key.
type Series = BTreeMap<String, [i64; DAYS as usize]>;

/// The "How" section of a token's page: two charts and a table by address.
pub async fn section(
    state: &AppState,
    token: TokenId,
    now: Timestamp,
) -> Result<Markup, ConsoleError> {
    let today = now.millis().div_euclid(DAY_MS) * DAY_MS;
    let since = Timestamp::from_millis(today - (DAYS - 1) * DAY_MS);
    let records = state.store().token_usage(token, since, now).await?;
    if records.is_empty() {
        return Ok(empty(
            "No requests recorded yet. Requests through a latchkey gateway appear here within a minute or two.",
            None,
        ));
    }
    let mut by_route = Series::new();
    let mut by_address = Series::new();
    for record in &records {
        let day = (record.minute.millis() - since.millis()).div_euclid(DAY_MS);
        let Ok(day) = usize::try_from(day) else {
            continue;
        };
        if day >= DAYS as usize {
            continue;
        }
        let route = format!("{} {}", record.method, record.route);
        by_route.entry(route).or_insert([0; DAYS as usize])[day] += record.count;
        by_address
            .entry(record.client_ip.clone())
            .or_insert([0; DAYS as usize])[day] += record.count;
    }
    Ok(html! {
        h3 { "By route" }
        (chart("Requests per day by route", &by_route, since))
        h3 { "By address" }
        (chart("Requests per day by client address", &by_address, since))
    })
}

/// The largest series first; the rest summed as "other".
fn top(series: &Series) -> Vec<(String, [i64; DAYS as usize])> {
    let mut all: Vec<(String, [i64; DAYS as usize])> =
        series.iter().map(|(k, v)| (k.clone(), *v)).collect();
    all.sort_by_key(|(key, counts)| (std::cmp::Reverse(counts.iter().sum::<i64>()), key.clone()));
    if all.len() > MAX_SERIES {
        let rest = all.split_off(MAX_SERIES - 1);
        let mut other = [0; DAYS as usize];
        for (_, counts) in rest {
            for (sum, count) in other.iter_mut().zip(counts) {
                *sum += count;
            }
        }
        all.push(("other".to_owned(), other));
    }
    all
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A stacked bar chart with a legend and, for screen readers, a table of the totals.
fn chart(title: &str, series: &Series, since: Timestamp) -> Markup {
    let series = top(series);
    let totals: Vec<i64> = (0..DAYS as usize)
        .map(|day| series.iter().map(|(_, counts)| counts[day]).sum())
        .collect();
    let peak = totals.iter().copied().max().unwrap_or(0).max(1);
    let (width, height, left, bottom) = (600.0_f64, 180.0_f64, 40.0_f64, 20.0_f64);
    let bar = (width - left) / DAYS as f64;
    let scale = (height - bottom - 10.0) / peak as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg viewBox="0 0 {width} {height}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        escape(title)
    );
    let _ = write!(
        svg,
        r##"<line x1="{left}" y1="{y}" x2="{width}" y2="{y}" stroke="#9aa3b2"/><text x="{tx}" y="16" font-size="11" text-anchor="end" fill="#5b6475">{peak}</text><text x="{tx}" y="{y}" font-size="11" text-anchor="end" fill="#5b6475">0</text>"##,
        y = height - bottom,
        tx = left - 4.0,
    );
    for day in 0..DAYS as usize {
        let mut top_y = height - bottom;
        let x = left + day as f64 * bar + 1.0;
        for (i, (key, counts)) in series.iter().enumerate() {
            let count = counts[day];
            if count == 0 {
                continue;
            }
            let h = count as f64 * scale;
            top_y -= h;
            let date = Timestamp::from_millis(since.millis() + day as i64 * DAY_MS).to_rfc3339();
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{top_y:.1}" width="{w:.1}" height="{h:.1}" fill="{}"><title>{}: {} on {}</title></rect>"#,
                COLOURS[i % COLOURS.len()],
                escape(key),
                count,
                &date[..10],
                w = (bar - 2.0).max(1.0),
            );
        }
    }
    svg.push_str("</svg>");
    html! {
        figure.chart {
            (raw(svg))
            figcaption {
                ul.tags {
                    @for (i, (key, counts)) in series.iter().enumerate() {
                        li {
                            svg width="10" height="10" aria-hidden="true" { rect width="10" height="10" fill=(COLOURS[i % COLOURS.len()]) {} }
                            " " code { (key) } " " (counts.iter().sum::<i64>())
                        }
                    }
                }
            }
        }
    }
}
