// Typed events cannot claim the store's reserved categories or overflow a kind.
use batpak::EventPayload;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, EventPayload)]
#[batpak(category = 0xD, type_id = 1)]
struct Effect;

#[derive(Serialize, Deserialize, EventPayload)]
#[batpak(category = 0x0, type_id = 1)]
struct System;

#[derive(Serialize, Deserialize, EventPayload)]
#[batpak(category = 0x10, type_id = 1)]
struct TooBigCategory;

#[derive(Serialize, Deserialize, EventPayload)]
#[batpak(category = 0x1, type_id = 0x1000)]
struct TooBigType;

#[derive(Serialize, Deserialize, EventPayload)]
struct NoKind;

fn main() {}
