//! A bought item is never lost between the merchant's answer and the user:
//! the wallet keeps it from the moment the purchase settles until it has been
//! written out, and the next command writes out what a run could not.

mod util;

use std::path::Path;

use util::{path_str, wallet, Network};

const GREEN: &str = "a cup of green tea";
/// Not UTF-8: only its exact bytes deliver it.
const BLOB: &[u8] = &[0x00, 0xff, 0xfe, b'\n', 0x1b, 0x80];

/// The request ids of the `recovered-<id>` files in a peer directory.
fn recovered(dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(dir)
        .expect("read the peer directory")
        .filter_map(|entry| {
            let name = entry.expect("a directory entry").file_name();
            name.to_str()?.strip_prefix("recovered-").map(str::to_owned)
        })
        .collect();
    ids.sort();
    ids
}

#[test]
fn an_item_a_run_cannot_write_out_is_kept_and_written_by_the_next_command() {
    let net = Network::start();
    let alice = net.funded_account("alice", "10");
    let tea_account = net.open_account("tea shop");
    let tea_dir = net.peer("tea");
    std::fs::write(tea_dir.join("blob.bin"), BLOB).expect("write the binary item");
    std::fs::write(
        tea_dir.join("catalog.toml"),
        format!(
            "[[item]]\nid = \"green\"\ntitle = \"Green tea\"\nprice = \"0.002\"\ntext = \"{GREEN}\"\n\n\
             [[item]]\nid = \"blob\"\ntitle = \"Some bytes\"\nprice = \"0.001\"\nfile = \"blob.bin\"\n"
        ),
    )
    .expect("write the catalog");
    let _tea = net.sell(&tea_dir, "tea", &tea_account);
    let alice_dir = net.peer("alice");
    wallet(
        &alice_dir,
        &["obtain-broker-scrip", "1", "--account", &alice.number],
    )
    .pin(&alice.pin)
    .ok("broker-scrip-obtained");

    // Bought, but the file cannot be written: the purchase stands, and the
    // user is told where the item will be.
    let nowhere = net.path("no such directory").join("green.txt");
    let failed = wallet(
        &alice_dir,
        &["buy", "tea", "green", "--out", path_str(&nowhere)],
    )
    .outcome();
    assert_eq!(failed.status.code(), Some(2), "{failed:#?}");
    assert!(failed.stdout.is_empty(), "{failed:#?}");
    assert!(
        failed.stderr.starts_with("error: bought, but cannot write"),
        "{failed:#?}"
    );
    let hint = failed
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("hint: "))
        .unwrap_or_else(|| panic!("a hint: {failed:#?}"));
    assert!(recovered(&alice_dir).is_empty(), "nothing written out yet");

    // The next command, whatever it is, writes it out, synced, and says so.
    let next = wallet(&alice_dir, &["balance"]).outcome();
    assert!(next.status.success(), "{next:#?}");
    let ids = recovered(&alice_dir);
    assert_eq!(ids.len(), 1, "{next:#?}");
    let file = alice_dir.join(format!("recovered-{}", ids[0]));
    assert!(
        hint.contains(path_str(&file)),
        "the hint named {file:?}: {hint}"
    );
    assert!(next.stderr.contains(path_str(&file)), "{next:#?}");
    assert_eq!(std::fs::read(&file).expect("the item"), GREEN.as_bytes());
    let held = util::balance(&alice_dir);
    assert_eq!(
        held.vendor_scrip.get("tea"),
        Some(&(util::micros("0.02") - util::micros("0.002"))),
        "paid once"
    );

    // Written out, the item is forgotten: it is not written again.
    std::fs::remove_file(&file).expect("remove the recovered item");
    let later = wallet(&alice_dir, &["balance"]).outcome();
    assert!(later.status.success(), "{later:#?}");
    assert!(recovered(&alice_dir).is_empty(), "{later:#?}");

    // With --json, bytes that are not UTF-8 come as hex, exactly, and the
    // wallet forgets the item once the line is out.
    let bought = wallet(&alice_dir, &["buy", "tea", "blob"]).ok("purchase");
    assert_eq!(bought["content"], serde_json::Value::Null, "{bought}");
    assert_eq!(bought["content_hex"], hex::encode(BLOB), "{bought}");
    let after = wallet(&alice_dir, &["balance"]).outcome();
    assert!(after.status.success(), "{after:#?}");
    assert!(recovered(&alice_dir).is_empty(), "{after:#?}");
    net.assert_conserved();
}
