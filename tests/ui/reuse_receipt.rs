// A Receipt is single-use: commit consumes it.
use batpak::prelude::*;

fn commit_twice(store: &Store, receipt: Receipt) {
    let _ = receipt.commit(store);
    let _ = receipt.commit(store);
}

fn main() {}
