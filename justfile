# Shorthands for `cargo xtask`, the canonical command surface.
# `just --list` shows them; `cargo xtask help` documents them.

default:
    @cargo xtask help

setup:
    cargo xtask setup

doctor *args:
    cargo xtask doctor {{args}}

ci:
    cargo xtask ci

docs *args:
    cargo xtask docs {{args}}

chaos *args:
    cargo xtask chaos {{args}}

fuzz *args:
    cargo xtask fuzz {{args}}

bench *args:
    cargo xtask bench {{args}}

perf-gates *args:
    cargo xtask perf-gates {{args}}

preflight *args:
    cargo xtask preflight {{args}}

quickstart:
    cargo run --example quickstart

test:
    cargo test
