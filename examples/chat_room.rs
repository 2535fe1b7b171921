//! A chat room on live feeds: `cargo run --example chat_room`.
//!
//! Three people post into a room from their own threads. Two kinds of reader
//! follow along:
//!
//! - a *screen* per member, a lossy subscription: it shows new messages as
//!   they are committed and, if it falls behind, says how many it missed;
//! - the *archiver*, a named guaranteed cursor: it must see every message
//!   exactly once and in order, and it keeps its place across restarts.

use std::sync::Arc;
use std::time::Duration;

use batpak::prelude::*;
use serde::{Deserialize, Serialize};

const POSTED: EventKind = EventKind::custom(0x1, 1);

#[derive(Debug, Serialize, Deserialize)]
struct Message {
    from: String,
    text: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let config = StoreConfig::new(dir.path()).with_sync_every_n_events(50);
    let store = Arc::new(Store::open(config.clone())?);
    let room = Region::all().with_scope("room:lobby");

    // A screen that keeps up, and one that only looks once everyone is done
    // (with a tiny buffer, so it visibly misses messages).
    let screen = store.subscribe_lossy(&room);
    let glance = store.subscribe_lossy_with_capacity(&room, 4);

    let speakers: Vec<_> = ["alice", "bob", "carol"]
        .into_iter()
        .map(|name| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || -> Result<(), StoreError> {
                let me = Coordinate::new(format!("member:{name}"), "room:lobby")?;
                for n in 1..=5 {
                    let message = Message {
                        from: name.to_string(),
                        text: format!("message {n} from {name}"),
                    };
                    store.append(&me, POSTED, &message)?;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Ok(())
            })
        })
        .collect();

    // The live screen prints messages as they arrive.
    let mut shown = 0;
    while shown < 15 {
        match screen.recv_timeout(Duration::from_secs(5)) {
            Ok(event) => {
                shown += 1;
                println!(
                    "[screen] #{:<3} {:>14}: {}",
                    event.header.sequence,
                    event.coordinate.entity(),
                    event.payload["text"].as_str().unwrap_or("?")
                );
            }
            Err(error) => {
                println!("[screen] stopped waiting: {error}");
                break;
            }
        }
    }
    for speaker in speakers {
        speaker.join().map_err(|_| "speaker thread panicked")??;
    }
    while glance.delivered() + glance.dropped() < 15 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let glanced: Vec<_> = std::iter::from_fn(|| glance.try_recv()).collect();
    println!(
        "[glance] saw {} messages, missed {} (buffer of 4)",
        glanced.len(),
        glance.dropped()
    );

    // The archiver reads the first half, commits, and "crashes".
    {
        let mut archiver = store.named_cursor("archiver", &room)?;
        for event in archiver.poll_batch(8)? {
            let message: Message = serde_json::from_value(event.payload)?;
            println!(
                "[archive] #{} {}: {}",
                event.header.sequence, message.from, message.text
            );
        }
        archiver.commit()?;
        println!(
            "[archive] committed at position {}",
            archiver.committed_position()
        );
    }
    let store = Arc::try_unwrap(store).map_err(|_| "store still shared")?;
    store.close()?;

    // After the restart it continues exactly where it committed.
    let store = Store::open(config)?;
    let mut archiver = store.named_cursor("archiver", &room)?;
    println!("[archive] resumed at position {}", archiver.position());
    let mut archived = 8;
    for event in archiver.by_ref() {
        let event = event?.map_payload(serde_json::from_value::<Message>);
        let message = event.payload?;
        println!(
            "[archive] #{} {}: {}",
            event.header.sequence, message.from, message.text
        );
        archived += 1;
    }
    archiver.commit()?;
    println!("[archive] {archived} messages archived, each exactly once");
    drop(archiver);
    store.close()?;
    Ok(())
}
