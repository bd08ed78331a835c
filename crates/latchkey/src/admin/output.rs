//! Printing what the server answered: pretty JSON for `--json`; for people, one-line
//! confirmations, `key: value` blocks and column-aligned tables. Values are shown as the
//! server sent them, with `-` for null or empty and control characters blanked.

use super::Format;
use super::client::printable;
use anyhow::Context;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Prints `value` as JSON, or as the text `render` makes of it.
pub fn emit(format: Format, value: &Value, render: impl FnOnce(&Value) -> String) {
    match format {
        Format::Json => println!("{value:#}"),
        Format::Text => println!("{}", render(value)),
    }
}

/// Prints `value` as JSON, as the server sent it, or as the text `render` makes of it
/// read as the wire type `T` (latchkey-wire, docs/API.md).
pub fn emit_read<T: DeserializeOwned>(
    format: Format,
    value: &Value,
    render: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{value:#}"),
        Format::Text => {
            let read = T::deserialize(value)
                .context("the server's answer is not in the shape docs/API.md gives")?;
            println!("{}", render(&read));
        }
    }
    Ok(())
}

/// A value as one line of text.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) if s.is_empty() => "-".to_owned(),
        Value::String(s) => printable(s),
        Value::Array(items) if items.is_empty() => "-".to_owned(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        other => printable(&other.to_string()),
    }
}

/// The `items` of a list response.
pub fn items(list: &Value) -> &[Value] {
    list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// `key: value` lines, values aligned.
pub fn fields(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(key, _)| key.len() + 1).max().unwrap_or(0);
    rows.iter()
        .map(|(key, value)| format!("{:width$} {value}", format!("{key}:")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A table with a header row, or `empty` when there are no rows.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>, empty: &str) -> String {
    if rows.is_empty() {
        return empty.to_owned();
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = headers.iter().map(|h| (*h).to_owned()).collect();
    std::iter::once(header)
        .chain(rows)
        .map(|row: Vec<String>| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:width$}"))
                .collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The width text output keeps to, where it can.
pub const WIDTH: usize = 100;

/// `label`, padded to `indent` columns, then `words` joined by spaces and wrapped to
/// [`WIDTH`] between words, continuation lines indented. A word may hold spaces (a list
/// entry such as `203.0.113.9 (1,204)`) and is never split; one longer than a line gets
/// a line of its own.
pub fn paragraph(label: &str, indent: usize, words: &[String]) -> String {
    let mut lines = Vec::new();
    let mut line = format!("{label:indent$}");
    let mut width = line.chars().count();
    let mut first = true;
    for word in words {
        let len = word.chars().count();
        if !first && width + 1 + len > WIDTH {
            lines.push(line);
            line = " ".repeat(indent);
            width = indent;
            first = true;
        }
        if !first {
            line.push(' ');
            width += 1;
        }
        line.push_str(word);
        width += len;
        first = false;
    }
    lines.push(line);
    lines.join("\n")
}

/// A count with its thousands separated by commas: `1,204`.
pub fn thousands(count: u64) -> String {
    let digits = count.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_columns_and_say_when_empty() {
        let rows = vec![
            vec!["acme".to_owned(), "Acme Inc.".to_owned()],
            vec!["latchkey".to_owned(), "-".to_owned()],
        ];
        assert_eq!(
            table(&["ID", "NAME"], rows, "no tenants"),
            "ID        NAME\nacme      Acme Inc.\nlatchkey  -"
        );
        assert_eq!(table(&["ID"], Vec::new(), "no tenants"), "no tenants");
    }

    #[test]
    fn values_read_as_text() {
        assert_eq!(text(&json!(null)), "-");
        assert_eq!(text(&json!([])), "-");
        assert_eq!(text(&json!(["a", "b"])), "a, b");
        assert_eq!(text(&json!(900)), "900");
        assert_eq!(text(&json!("x\u{1b}[2J")), "x [2J");
    }

    #[test]
    fn paragraphs_wrap_between_words_under_the_label() {
        let words: Vec<String> = ["alpha", "beta gamma", "delta"].map(str::to_owned).to_vec();
        assert_eq!(paragraph("WHO", 7, &words), "WHO    alpha beta gamma delta");
        let long: Vec<String> = (0..30).map(|n| format!("entry-{n:02},")).collect();
        let wrapped = paragraph("WHERE", 7, &long);
        let lines: Vec<&str> = wrapped.lines().collect();
        assert_eq!(lines.len(), 4, "{wrapped}");
        assert!(
            lines[0].starts_with("WHERE  entry-00, entry-01,"),
            "{wrapped}"
        );
        assert!(lines[1].starts_with("       entry-"), "{wrapped}");
        assert!(
            lines.iter().all(|l| l.chars().count() <= WIDTH),
            "{wrapped}"
        );
        let words: Vec<String> = ["x".repeat(120), "y".to_owned()].to_vec();
        assert_eq!(
            paragraph("HOW", 7, &words),
            format!("HOW    {}\n       y", "x".repeat(120))
        );
    }

    #[test]
    fn counts_group_their_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_204), "1,204");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }
}
