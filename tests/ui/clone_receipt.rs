// A Receipt cannot be cloned to commit the same approval twice.
use batpak::prelude::*;

fn duplicate(receipt: Receipt) -> (Receipt, Receipt) {
    let copy = receipt.clone();
    (receipt, copy)
}

fn main() {}
