//! Handing a bought item over: the wallet keeps it from the moment its
//! purchase settles until it is written out, writes to a `recovered-` file
//! what the command cannot deliver, and has the next command, even one that
//! cannot reach the broker, write out what a run left behind.

mod util;

use std::path::Path;
use std::process::{Command, Stdio};

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

/// Takes the one `recovered-` file of `dir`: its content.
fn take_recovered(dir: &Path) -> Vec<u8> {
    let ids = recovered(dir);
    assert_eq!(ids.len(), 1, "one recovered item wanted: {ids:?}");
    let file = dir.join(format!("recovered-{}", ids[0]));
    let content = std::fs::read(&file).expect("read the recovered item");
    std::fs::remove_file(&file).expect("remove the recovered item");
    content
}

/// A wallet command that must succeed and leave no `recovered-` file:
/// nothing is kept that should have been forgotten.
fn nothing_kept(dir: &Path) {
    let next = wallet(dir, &["balance"]).outcome();
    assert!(next.status.success(), "{next:#?}");
    assert!(recovered(dir).is_empty(), "{next:#?}");
}

#[test]
fn every_bought_item_reaches_the_user_once_written_out_or_in_a_recovered_file() {
    let mut net = Network::start();
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

    // Written to --out: the wallet forgets it.
    let out = net.path("green.txt");
    wallet(
        &alice_dir,
        &["buy", "tea", "green", "--out", path_str(&out)],
    )
    .ok("purchase");
    assert_eq!(std::fs::read(&out).expect("the item"), GREEN.as_bytes());
    nothing_kept(&alice_dir);

    // With --json, bytes that are not UTF-8 come as hex, exactly, and the
    // wallet forgets the item once the line is out.
    let bought = wallet(&alice_dir, &["buy", "tea", "blob"]).ok("purchase");
    assert_eq!(bought["content"], serde_json::Value::Null, "{bought}");
    assert_eq!(bought["content_hex"], hex::encode(BLOB), "{bought}");
    nothing_kept(&alice_dir);

    // Standard output that goes nowhere cannot deliver it: a file does.
    let to_null = Command::new(util::SCRIP)
        .args(["wallet", path_str(&alice_dir), "buy", "tea", "blob"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .expect("run scrip");
    assert!(to_null.status.success(), "{to_null:?}");
    assert!(
        String::from_utf8_lossy(&to_null.stderr).contains("standard output goes nowhere"),
        "{to_null:?}"
    );
    assert_eq!(take_recovered(&alice_dir), BLOB);
    nothing_kept(&alice_dir);

    // Bought, but --out cannot be written: the purchase stands, and the
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
    assert!(failed.stderr.contains("\nhint: "), "{failed:#?}");
    assert!(recovered(&alice_dir).is_empty(), "nothing written out yet");
    let held = util::balance(&alice_dir);
    assert_eq!(
        held.vendor_scrip.get("tea"),
        Some(&(util::micros("0.02") - util::micros("0.002") * 2 - util::micros("0.001") * 2)),
        "each purchase paid once"
    );
    // That `balance` wrote it out. Once more, to see the next command do it
    // without the broker, and the hint name the file.
    assert_eq!(take_recovered(&alice_dir), GREEN.as_bytes());
    let failed = wallet(
        &alice_dir,
        &["buy", "tea", "green", "--out", path_str(&nowhere)],
    )
    .outcome();
    assert_eq!(failed.status.code(), Some(2), "{failed:#?}");

    // The next command writes it out even when the broker cannot be reached.
    net.broker.stop();
    let offline = wallet(&alice_dir, &["balance"]).outcome();
    assert_eq!(offline.status.code(), Some(3), "{offline:#?}");
    let ids = recovered(&alice_dir);
    assert_eq!(ids.len(), 1, "{offline:#?}");
    let file = alice_dir.join(format!("recovered-{}", ids[0]));
    assert!(offline.stderr.contains(path_str(&file)), "{offline:#?}");
    let hint = failed.stderr.lines().find(|l| l.starts_with("hint: "));
    assert!(
        hint.is_some_and(|hint| hint.contains(path_str(&file))),
        "the hint named the file: {failed:#?}"
    );
    assert_eq!(take_recovered(&alice_dir), GREEN.as_bytes());
}
