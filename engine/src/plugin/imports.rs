//! What a policy component may import, and how each import is satisfied.
//!
//! WASI is not linked whole: a call that waits in a host function (a clock subscription and
//! `poll`, a blocking stream write) would hold its thread past every limit, since fuel and the
//! CPU-time budget only act while guest code runs. So the engine provides, itself, only what a
//! policy may use and what cannot wait:
//!
//! - `wasi:clocks/wall-clock` and `wasi:clocks/monotonic-clock` (`now`, `resolution`): the
//!   host's clocks when the pipeline grants `clocks`, else a clock frozen at the Unix epoch;
//! - `wasi:random/random`, `insecure`, `insecure-seed`: the host's randomness when the pipeline
//!   grants `random`, else zeros (hash maps and the like need a seed to start);
//! - `wasi:cli/environment`: no variables, no arguments, no working directory.
//!
//! Every other WASI function that ordinary toolchains import (files, sockets, stdio, `poll`,
//! `exit`, clock subscriptions) is a stub that traps at once, naming itself, without touching
//! the host: no file, socket, timer or host resource is ever created. An import outside WASI is
//! refused when the component is loaded, with its name.

use std::time::{SystemTime, UNIX_EPOCH};

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentType, Linker, LinkerInstance, Lower, ResourceType};
use wasmtime::{Engine, StoreContextMut};

use super::sandbox::{Capabilities, GuestState};

/// Most random bytes one call may ask for; more is an attack on the host's memory, not a need.
pub const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// `wasi:clocks/wall-clock`'s `datetime`.
#[derive(ComponentType, Lower, Clone, Copy)]
#[component(record)]
struct Datetime {
    seconds: u64,
    nanoseconds: u32,
}

/// The interfaces the engine provides (unversioned names) and the functions of each it
/// implements; the rest of their functions are stubs.
const PROVIDED: [&str; 6] = [
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/environment",
];

/// `name` without its `@version`.
fn unversioned(name: &str) -> &str {
    name.split_once('@').map_or(name, |(n, _)| n)
}

/// Satisfies every import of `component` in `linker` as the module documentation says, under
/// the exact (versioned) names the component imports. `Err` names an import the engine will
/// not provide.
pub(super) fn link(
    linker: &mut Linker<GuestState>,
    engine: &Engine,
    component: &Component,
    caps: Capabilities,
) -> Result<(), String> {
    let ty = component.component_type();
    for (name, import) in ty.imports(engine) {
        if !name.starts_with("wasi:") {
            return Err(format!(
                "it imports `{name}`, which the engine does not provide (a policy may import only WASI, and gets clocks, randomness and an empty environment)"
            ));
        }
        let ComponentItem::ComponentInstance(instance) = import.ty else {
            return Err(format!(
                "it imports `{name}` as something other than an interface"
            ));
        };
        let mut linked = linker.instance(name).map_err(|e| format!("{e:#}"))?;
        if PROVIDED.contains(&unversioned(name)) {
            provide(&mut linked, unversioned(name), caps).map_err(|e| format!("{name}: {e:#}"))?;
        }
        for (item, export) in instance.exports(engine) {
            let defined = provided(unversioned(name), item);
            match export.ty {
                ComponentItem::ComponentFunc(_) if !defined => {
                    let what = format!("{name}#{item}");
                    let stub = what.clone();
                    linked
                        .func_new(item, move |_, _, _, _| Err(refused(&stub)))
                        .map_err(|e| format!("{what}: {e:#}"))?;
                }
                ComponentItem::Resource(_) => {
                    // A resource the stubs never create: nothing can hold one.
                    linked
                        .resource(item, ResourceType::host::<()>(), |_, _| Ok(()))
                        .map_err(|e| format!("{name}#{item}: {e:#}"))?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Why a stubbed import trapped.
fn refused(what: &str) -> wasmtime::Error {
    let hint = if what.starts_with("wasi:cli/std") || what.starts_with("wasi:io/streams") {
        " (writing to stdout or stderr: a Rust panic message does)"
    } else {
        ""
    };
    wasmtime::Error::msg(format!(
        "the policy sandbox does not provide `{what}`{hint}"
    ))
}

/// Whether the engine implements function `item` of interface `interface` (unversioned).
fn provided(interface: &str, item: &str) -> bool {
    matches!(
        (interface, item),
        ("wasi:clocks/wall-clock", "now" | "resolution")
            | ("wasi:clocks/monotonic-clock", "now" | "resolution")
            | ("wasi:random/random", "get-random-bytes" | "get-random-u64")
            | (
                "wasi:random/insecure",
                "get-insecure-random-bytes" | "get-insecure-random-u64"
            )
            | ("wasi:random/insecure-seed", "insecure-seed")
            | (
                "wasi:cli/environment",
                "get-environment" | "get-arguments" | "initial-cwd"
            )
    )
}

/// Defines the functions of `interface` the engine implements.
fn provide(
    linked: &mut LinkerInstance<'_, GuestState>,
    interface: &str,
    caps: Capabilities,
) -> wasmtime::Result<()> {
    match interface {
        "wasi:clocks/wall-clock" => {
            linked.func_wrap("now", move |_: StoreContextMut<'_, GuestState>, (): ()| {
                let since = if caps.clocks {
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                } else {
                    std::time::Duration::ZERO
                };
                Ok((Datetime {
                    seconds: since.as_secs(),
                    nanoseconds: since.subsec_nanos(),
                },))
            })?;
            linked.func_wrap(
                "resolution",
                move |_: StoreContextMut<'_, GuestState>, (): ()| {
                    let nanoseconds = if caps.clocks { 1 } else { 0 };
                    let seconds = if caps.clocks { 0 } else { 1 };
                    Ok((Datetime {
                        seconds,
                        nanoseconds,
                    },))
                },
            )?;
        }
        "wasi:clocks/monotonic-clock" => {
            linked.func_wrap(
                "now",
                move |store: StoreContextMut<'_, GuestState>, (): ()| {
                    let nanos = if caps.clocks {
                        store.data().started.elapsed().as_nanos() as u64
                    } else {
                        0
                    };
                    Ok((nanos,))
                },
            )?;
            linked.func_wrap(
                "resolution",
                move |_: StoreContextMut<'_, GuestState>, (): ()| {
                    Ok((if caps.clocks { 1u64 } else { 1_000_000_000 },))
                },
            )?;
        }
        "wasi:random/random" | "wasi:random/insecure" => {
            let (bytes, number) = if interface == "wasi:random/random" {
                ("get-random-bytes", "get-random-u64")
            } else {
                ("get-insecure-random-bytes", "get-insecure-random-u64")
            };
            linked.func_wrap(
                bytes,
                move |_: StoreContextMut<'_, GuestState>, (len,): (u64,)| {
                    Ok((random_bytes(caps, len)?,))
                },
            )?;
            linked.func_wrap(number, move |_: StoreContextMut<'_, GuestState>, (): ()| {
                let bytes = random_bytes(caps, 8)?;
                let mut word = [0u8; 8];
                word.copy_from_slice(&bytes);
                Ok((u64::from_le_bytes(word),))
            })?;
        }
        "wasi:random/insecure-seed" => {
            linked.func_wrap(
                "insecure-seed",
                move |_: StoreContextMut<'_, GuestState>, (): ()| {
                    let bytes = random_bytes(caps, 16)?;
                    let mut halves = [[0u8; 8]; 2];
                    halves[0].copy_from_slice(&bytes[..8]);
                    halves[1].copy_from_slice(&bytes[8..]);
                    Ok(((u64::from_le_bytes(halves[0]), u64::from_le_bytes(halves[1])),))
                },
            )?;
        }
        "wasi:cli/environment" => {
            linked.func_wrap(
                "get-environment",
                |_: StoreContextMut<'_, GuestState>, (): ()| Ok((Vec::<(String, String)>::new(),)),
            )?;
            linked.func_wrap(
                "get-arguments",
                |_: StoreContextMut<'_, GuestState>, (): ()| Ok((Vec::<String>::new(),)),
            )?;
            linked.func_wrap(
                "initial-cwd",
                |_: StoreContextMut<'_, GuestState>, (): ()| Ok((None::<String>,)),
            )?;
        }
        _ => {}
    }
    Ok(())
}

/// `len` random bytes: the host's when `random` is granted, else zeros.
fn random_bytes(caps: Capabilities, len: u64) -> wasmtime::Result<Vec<u8>> {
    if len > MAX_RANDOM_BYTES {
        return Err(wasmtime::Error::msg(format!(
            "asked for {len} random bytes; the policy sandbox gives at most {MAX_RANDOM_BYTES} per call"
        )));
    }
    let mut bytes = vec![0u8; len as usize];
    if caps.random {
        getrandom::fill(&mut bytes)
            .map_err(|e| wasmtime::Error::msg(format!("the host's randomness: {e}")))?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_implements_clocks_randomness_and_an_empty_environment_only() {
        assert!(provided("wasi:clocks/monotonic-clock", "now"));
        assert!(!provided(
            "wasi:clocks/monotonic-clock",
            "subscribe-duration"
        ));
        assert!(!provided("wasi:io/poll", "poll"));
        assert!(!provided("wasi:filesystem/preopens", "get-directories"));
        assert_eq!(
            unversioned("wasi:random/random@0.2.6"),
            "wasi:random/random"
        );
        assert!(random_bytes(Capabilities::default(), MAX_RANDOM_BYTES + 1).is_err());
        assert_eq!(
            random_bytes(Capabilities::default(), 4).ok(),
            Some(vec![0; 4])
        );
    }
}
