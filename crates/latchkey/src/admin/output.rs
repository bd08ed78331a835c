//! Printing what the server answered: pretty JSON for `--json`; for people, one-line
//! confirmations, `key: value` blocks and column-aligned tables. Values are shown as the
//! server sent them, with `-` for null or empty and control characters blanked.

use super::Format;
use super::client::printable;
use serde_json::Value;

/// Prints `value` as JSON, or as the text `render` makes of it.
pub fn emit(format: Format, value: &Value, render: impl FnOnce(&Value) -> String) {
    match format {
        Format::Json => println!("{value:#}"),
        Format::Text => println!("{}", render(value)),
    }
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
}
