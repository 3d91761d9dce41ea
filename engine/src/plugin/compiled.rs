//! Compiled plugins kept on disk, so a restart or a swap back to a plugin already seen does
//! not compile it again (a component with an interpreter inside, Python's or JavaScript's,
//! takes 10–30 s to compile; a Rust one a fraction of a second).
//!
//! An entry is wasmtime's serialized form of a component: native code the engine will run.
//! So the directory is trusted like the engine's binary: it is created `0700`, and it and
//! every entry are used only when owned by the engine's user and writable by nobody else;
//! anything else is ignored (compiled afresh) with a warning. An entry's name is the SHA-256
//! of the component file and a hash of the wasmtime version and configuration, so a changed
//! plugin or engine never finds a stale entry, and wasmtime refuses an incompatible one
//! again when it reads it. Entries are written to a temporary file and renamed, so a crash
//! leaves none half-written; the [`KEEP`] most recently used are kept.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::SystemTime;

use wasmtime::component::Component;
use wasmtime::Engine;

/// Entries kept; the least recently used beyond these are removed when one is added.
pub const KEEP: usize = 8;
/// A temporary file older than this was abandoned by a crash.
const ABANDONED: std::time::Duration = std::time::Duration::from_secs(3600);
/// The environment variable naming the directory (`off` turns the cache off).
pub const ENV: &str = "ORDO_PLUGIN_CACHE";

/// Where compiled plugins are kept, once checked.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// Whether a component came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Read from an entry.
    Cached,
    /// Compiled now (and stored, when the cache could take it).
    Compiled,
}

impl Cache {
    /// Opens `dir`, creating it `0700` when missing; refuses a directory that another user
    /// owns or that others may write to.
    pub fn open(dir: &Path) -> Result<Self, String> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        trusted(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The component `bytes` compile to under `engine`: from the cache when an entry is there
    /// and sound, else compiled and stored. `id` is the file's `sha256:<hex>`
    /// ([`super::wasm::content_id`], which the loader has computed already). A cache that
    /// fails costs a compile, never a load.
    pub fn component(
        &self,
        engine: &Engine,
        bytes: &[u8],
        id: &str,
    ) -> wasmtime::Result<(Component, Source)> {
        let entry = self.dir.join(entry_name(engine, id));
        if let Some(component) = self.read(engine, &entry) {
            return Ok((component, Source::Cached));
        }
        let component = Component::from_binary(engine, bytes)?;
        if let Err(e) = self.write(&component, &entry) {
            tracing::warn!(entry = %entry.display(), error = %e, "could not keep the compiled plugin; it will be compiled again next time");
        }
        Ok((component, Source::Compiled))
    }

    fn read(&self, engine: &Engine, entry: &Path) -> Option<Component> {
        if !entry.exists() {
            return None;
        }
        if let Err(e) = trusted(entry) {
            tracing::warn!(error = %e, "ignoring a compiled plugin in the cache");
            return None;
        }
        let bytes = fs::read(entry).ok()?;
        // SAFETY: wasmtime runs serialized code as native code. `entry` is a file this
        // process's user owns and nobody else may write, in a directory with the same checks,
        // written by `write` below from `Component::serialize` under an engine with the same
        // compatibility hash (its name says so); wasmtime checks the version and
        // configuration again and refuses an entry that does not match.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(component) => {
                // Recently used: kept longest.
                let _ = fs::File::options()
                    .append(true)
                    .open(entry)
                    .and_then(|f| f.set_modified(SystemTime::now()));
                Some(component)
            }
            Err(e) => {
                tracing::warn!(entry = %entry.display(), error = %format!("{e:#}"), "ignoring a compiled plugin wasmtime refuses");
                let _ = fs::remove_file(entry);
                None
            }
        }
    }

    fn write(&self, component: &Component, entry: &Path) -> std::io::Result<()> {
        let bytes = component.serialize().map_err(std::io::Error::other)?;
        // Unique per process and per write: two loads of one plugin may store it at once.
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let temporary = entry.with_extension(format!(
            "tmp{}-{}",
            std::process::id(),
            WRITES.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = fs::File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        let written = file.write_all(&bytes).and_then(|()| file.sync_all());
        if let Err(e) = written.and_then(|()| fs::rename(&temporary, entry)) {
            let _ = fs::remove_file(&temporary);
            return Err(e);
        }
        self.prune();
        Ok(())
    }

    /// Removes entries beyond the [`KEEP`] most recently used, and temporary files a crash
    /// left behind (older than an hour).
    fn prune(&self) {
        let Ok(listing) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(SystemTime, PathBuf)> = Vec::new();
        for found in listing.filter_map(Result::ok) {
            let path = found.path();
            let Some(modified) = found.metadata().ok().and_then(|m| m.modified().ok()) else {
                continue;
            };
            let extension = path.extension().and_then(|x| x.to_str()).unwrap_or("");
            if extension == "cwasm" {
                entries.push((modified, path));
            } else if extension.starts_with("tmp")
                && modified.elapsed().is_ok_and(|age| age > ABANDONED)
            {
                let _ = fs::remove_file(path);
            }
        }
        entries.sort_by_key(|e| std::cmp::Reverse(e.0));
        for (_, path) in entries.into_iter().skip(KEEP) {
            let _ = fs::remove_file(path);
        }
    }
}

/// `<sha256 of the component>-<hash of wasmtime's version and configuration>.cwasm`, from
/// the component's `sha256:<hex>` id.
fn entry_name(engine: &Engine, id: &str) -> String {
    let mut compatibility = DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut compatibility);
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    format!("{hex}-{:016x}.cwasm", compatibility.finish())
}

/// Refuses `path` unless it is this user's and nobody else may write it (not a link).
fn trusted(path: &Path) -> Result<(), String> {
    let meta =
        fs::symlink_metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.file_type().is_symlink() {
        return Err(format!("{} is a symbolic link", path.display()));
    }
    if meta.uid() != me {
        return Err(format!(
            "{} belongs to user {}, not to this process's user {me}",
            path.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} may be written by other users (mode {:o}); compiled plugins are native code",
            path.display(),
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

/// The process-wide cache: set once by [`configure`]; none until then (compile every time).
static CACHE: OnceLock<Option<Cache>> = OnceLock::new();

/// Uses `cache` (or none) for every plugin this process loads from now on. The first call
/// wins; later ones are ignored.
pub fn configure(cache: Option<Cache>) {
    if let Some(cache) = &cache {
        tracing::info!(dir = %cache.dir().display(), "compiled plugins are kept on disk");
    }
    let _ = CACHE.set(cache);
}

/// The cache configured for this process, if any.
pub fn configured() -> Option<&'static Cache> {
    CACHE.get().and_then(Option::as_ref)
}

/// The directory a command uses when neither its flag nor [`ENV`] names one:
/// `$XDG_CACHE_HOME/ordo/compiled-plugins`, else `$HOME/.cache/ordo/compiled-plugins`.
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("ordo").join("compiled-plugins"))
}

/// The component `bytes` compile to under `engine`, through the configured cache if any.
pub fn component(engine: &Engine, bytes: &[u8], id: &str) -> wasmtime::Result<(Component, Source)> {
    match configured() {
        Some(cache) => cache.component(engine, bytes, id),
        None => Ok((Component::from_binary(engine, bytes)?, Source::Compiled)),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A minimal component: compiles in milliseconds.
    const COMPONENT: &str = "(component (core module))";

    fn engine() -> Engine {
        Engine::default()
    }

    fn bytes() -> Vec<u8> {
        wat::parse_str(COMPONENT).expect("the fixture parses")
    }

    fn id(bytes: &[u8]) -> String {
        crate::plugin::wasm::content_id(bytes)
    }

    #[test]
    fn a_component_is_compiled_once_then_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = Cache::open(&dir.path().join("c")).expect("opens");
        let engine = engine();
        let (_, first) = cache
            .component(&engine, &bytes(), &id(&bytes()))
            .expect("compiles");
        let (_, second) = cache
            .component(&engine, &bytes(), &id(&bytes()))
            .expect("reads");
        assert_eq!((first, second), (Source::Compiled, Source::Cached));
        let mode = fs::metadata(cache.dir()).expect("dir").mode() & 0o777;
        assert_eq!(mode, 0o700);
        let entry = fs::read_dir(cache.dir())
            .expect("list")
            .next()
            .expect("one entry")
            .expect("entry");
        assert_eq!(entry.metadata().expect("meta").mode() & 0o777, 0o600);
    }

    #[test]
    fn a_directory_others_may_write_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = Cache::open(dir.path()).expect_err("refused");
        assert!(err.contains("may be written by other users"), "{err}");
    }

    #[test]
    fn an_entry_others_may_write_or_that_is_garbage_is_compiled_afresh() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = Cache::open(dir.path()).expect("opens");
        let engine = engine();
        cache
            .component(&engine, &bytes(), &id(&bytes()))
            .expect("compiles");
        let entry = dir.path().join(entry_name(&engine, &id(&bytes())));
        fs::set_permissions(&entry, fs::Permissions::from_mode(0o666)).expect("chmod");
        let (_, source) = cache
            .component(&engine, &bytes(), &id(&bytes()))
            .expect("compiles");
        assert_eq!(source, Source::Compiled, "a writable entry is not trusted");
        fs::remove_file(&entry).expect("rm");
        fs::write(&entry, b"not a compiled component").expect("write");
        fs::set_permissions(&entry, fs::Permissions::from_mode(0o600)).expect("chmod");
        let (_, source) = cache
            .component(&engine, &bytes(), &id(&bytes()))
            .expect("compiles");
        assert_eq!(source, Source::Compiled, "garbage is refused by wasmtime");
        let (_, source) = cache
            .component(&engine, &bytes(), &id(&bytes()))
            .expect("reads");
        assert_eq!(source, Source::Cached, "and replaced by a sound entry");
    }

    #[test]
    fn a_different_component_or_engine_has_its_own_entry() {
        let other = wat::parse_str("(component (core module (func)))").expect("parses");
        let mut fuel = wasmtime::Config::new();
        fuel.consume_fuel(true);
        let metered = Engine::new(&fuel).expect("engine");
        let names = [
            entry_name(&engine(), &id(&bytes())),
            entry_name(&engine(), &id(&other)),
            entry_name(&metered, &id(&bytes())),
        ];
        assert_ne!(names[0], names[1]);
        assert_ne!(names[0], names[2]);
    }

    #[test]
    fn only_the_most_recently_used_are_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = Cache::open(dir.path()).expect("opens");
        let engine = engine();
        for i in 0..KEEP + 3 {
            let text = format!("(component (core module (func (export \"f{i}\"))))");
            let component = wat::parse_str(&text).expect("parses");
            cache
                .component(&engine, &component, &id(&component))
                .expect("compiles");
        }
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), KEEP);
    }
}
