//! `latchkey keys …`: the server's JWT signing keys. `rotate` forces the rotation the
//! schedule would otherwise make: the announced next key starts signing, a new next key
//! is published, and the oldest published key drops out. Needs latchkey:admin.

use super::Format;
use super::client::Client;
use super::output::{emit, fields, text};
use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Rotate the signing keys now; prints the new current kid and the published kids.
    Rotate,
}

pub async fn run(client: &Client, format: Format, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Rotate => {
            let keys = client
                .send(
                    Method::POST,
                    &["v1", "keys", "rotate"],
                    &serde_json::json!({}),
                )
                .await?;
            emit(format, &keys, rotated_text);
        }
    }
    Ok(())
}

fn rotated_text(keys: &Value) -> String {
    let rows = [
        ("current kid", text(&keys["current_kid"])),
        ("published kids", text(&keys["published_kids"])),
    ];
    format!("rotated the signing keys\n{}", fields(&rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_rotation_reads_as_the_signing_kid_and_the_published_ones() {
        let keys = json!({"current_kid": "k2", "published_kids": ["k3", "k2", "k1"]});
        assert_eq!(
            rotated_text(&keys),
            "rotated the signing keys\ncurrent kid:    k2\npublished kids: k3, k2, k1"
        );
    }
}
