//! The watch on the files of the config in force (config, weights, listener certificates):
//! their directories, and which names in them matter, moved along when a reload points the
//! weights file somewhere else.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// Kubernetes ConfigMap volumes update by swapping this symlink.
const CONFIGMAP_DATA: &str = "..data";

/// Directories watched for the config, weights and certificate files; every event about one
/// of their names is sent as a `()` to the reload loop.
#[derive(Debug)]
pub(super) struct FileWatch {
    /// `None` when the platform gives no watcher: only SIGHUP reloads.
    watcher: Option<notify::RecommendedWatcher>,
    /// File names whose events matter. Shared with the watcher's event callback; never held
    /// while calling the watcher, which waits on the thread that runs the callback.
    names: Arc<Mutex<Vec<OsString>>>,
    /// Directories watched now.
    watched: Vec<PathBuf>,
}

impl FileWatch {
    /// A watcher that watches nothing yet; [`FileWatch::follow`] says what to watch.
    pub(super) fn start(events: mpsc::UnboundedSender<()>) -> Self {
        let names = Arc::new(Mutex::new(Vec::<OsString>::new()));
        let wanted = names.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event {
                let wanted = wanted.lock().unwrap_or_else(PoisonError::into_inner);
                if concerns(&event, &wanted) {
                    let _ = events.send(());
                }
            }
        });
        let watcher = match watcher {
            Ok(watcher) => Some(watcher),
            Err(e) => {
                warn!(error = %e, "file watching unavailable; use SIGHUP to reload");
                None
            }
        };
        Self {
            watcher,
            names,
            watched: Vec::new(),
        }
    }

    /// Watches the config file, its weights file (none in fleet mode: there the proxy writes
    /// it) and `also` (listener certificates), and stops watching directories it no longer
    /// needs. Returns whether a directory or name was added: a file there may have changed
    /// before the watch began. Waits on the watcher: call it where blocking is allowed.
    pub(super) fn follow(
        &mut self,
        config_path: &Path,
        weights_file: Option<&Path>,
        also: &[PathBuf],
    ) -> bool {
        let (dirs, names) = watch_set(config_path, weights_file, also);
        let mut added = {
            let mut current = self.names.lock().unwrap_or_else(PoisonError::into_inner);
            let added = names.iter().any(|n| !current.contains(n));
            *current = names;
            added
        };
        let Some(watcher) = self.watcher.as_mut() else {
            return added;
        };
        let new: Vec<&PathBuf> = dirs.iter().filter(|d| !self.watched.contains(d)).collect();
        for dir in new {
            match watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    debug!(dir = %dir.display(), "watching");
                    self.watched.push(dir.clone());
                    added = true;
                }
                Err(e) => {
                    warn!(dir = %dir.display(), error = %e, "cannot watch directory; use SIGHUP to reload");
                }
            }
        }
        self.watched.retain(|dir| {
            if dirs.contains(dir) {
                return true;
            }
            // Fails when the directory is gone, which also ends its watch.
            if let Err(e) = watcher.unwatch(dir) {
                debug!(dir = %dir.display(), error = %e, "unwatch failed");
            }
            debug!(dir = %dir.display(), "no longer watching");
            false
        });
        added
    }
}

/// The directories to watch and the file names that matter in them, for a config at
/// `config_path` with `weights_file`, and the files `also`.
fn watch_set(
    config_path: &Path,
    weights_file: Option<&Path>,
    also: &[PathBuf],
) -> (Vec<PathBuf>, Vec<OsString>) {
    let files = std::iter::once(config_path)
        .chain(weights_file)
        .chain(also.iter().map(PathBuf::as_path));
    let mut dirs: Vec<PathBuf> = files.clone().map(parent_dir).collect();
    dirs.sort();
    dirs.dedup();
    let mut names: Vec<OsString> = files.map(file_name).collect();
    names.push(OsString::from(CONFIGMAP_DATA));
    names.sort();
    names.dedup();
    (dirs, names)
}

/// Whether a file event can change what sluice reads: not a mere access (reading the files
/// must not trigger another reload), and about one of `names` in a watched directory.
fn concerns(event: &notify::Event, names: &[OsString]) -> bool {
    if matches!(event.kind, notify::EventKind::Access(_)) {
        return false;
    }
    event.paths.iter().any(|p| {
        p.file_name()
            .is_some_and(|n| names.iter().any(|want| want == n))
    })
}

fn file_name(path: &Path) -> OsString {
    path.file_name().map(OsString::from).unwrap_or_default()
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use sluice_config::Config;

    use super::*;

    fn os(names: &[&str]) -> Vec<OsString> {
        names.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_set_is_the_directories_and_names_of_both_files() {
        let (dirs, names) = watch_set(
            Path::new("/etc/sluice/sluice.yaml"),
            Some(Path::new("/var/lib/sluice/weights.yaml")),
            &[],
        );
        assert_eq!(
            dirs,
            [
                PathBuf::from("/etc/sluice"),
                PathBuf::from("/var/lib/sluice")
            ]
        );
        assert_eq!(names, os(&["..data", "sluice.yaml", "weights.yaml"]));
    }

    #[test]
    fn one_directory_when_both_files_share_it() {
        let (dirs, names) = watch_set(
            Path::new("sluice.yaml"),
            Some(Path::new("weights.yaml")),
            &[],
        );
        assert_eq!(dirs, [PathBuf::from(".")]);
        assert_eq!(names, os(&["..data", "sluice.yaml", "weights.yaml"]));
        let (dirs, names) = watch_set(Path::new("conf/sluice.yaml"), None, &[]);
        assert_eq!(dirs, [PathBuf::from("conf")]);
        assert_eq!(names, os(&["..data", "sluice.yaml"]));
    }

    #[test]
    fn listener_certificates_are_watched_in_their_directories() {
        let (dirs, names) = watch_set(
            Path::new("/etc/sluice/sluice.yaml"),
            None,
            &[
                PathBuf::from("/etc/tls/tls.crt"),
                PathBuf::from("/etc/tls/tls.key"),
                PathBuf::from("/etc/sluice/ca.pem"),
            ],
        );
        assert_eq!(
            dirs,
            [PathBuf::from("/etc/sluice"), PathBuf::from("/etc/tls")]
        );
        assert_eq!(
            names,
            os(&["..data", "ca.pem", "sluice.yaml", "tls.crt", "tls.key"])
        );
    }

    #[test]
    fn following_a_moved_weights_file_adds_its_directory_and_drops_the_old_one() {
        let config_dir = tempfile::tempdir().expect("temp dir");
        let old_dir = tempfile::tempdir().expect("temp dir");
        let new_dir = tempfile::tempdir().expect("temp dir");
        let config_path = config_dir.path().join("sluice.yaml");
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut files = FileWatch::start(tx);
        let config = |weights: &Path| {
            let text = format!(
                "listeners: [{{ name: http, address: \"127.0.0.1:0\" }}]\nupstreams:\n  a: {{ endpoints: [\"127.0.0.1:1\"] }}\nroutes:\n  - {{ name: r, backends: [{{ upstream: a, weight: 1 }}] }}\nweights_file: {}\n",
                weights.display()
            );
            std::fs::write(&config_path, text).expect("write config");
            Config::load(&config_path).expect("valid config")
        };
        assert!(files.follow(
            &config_path,
            config(&old_dir.path().join("w.yaml"))
                .weights_file
                .as_deref(),
            &[]
        ));
        let mut want = vec![
            config_dir.path().to_path_buf(),
            old_dir.path().to_path_buf(),
        ];
        want.sort();
        assert_eq!(files.watched, want);
        assert!(
            !files.follow(
                &config_path,
                config(&old_dir.path().join("w.yaml"))
                    .weights_file
                    .as_deref(),
                &[]
            ),
            "nothing new"
        );
        assert!(files.follow(
            &config_path,
            config(&new_dir.path().join("w2.yaml"))
                .weights_file
                .as_deref(),
            &[]
        ));
        let mut want = vec![
            config_dir.path().to_path_buf(),
            new_dir.path().to_path_buf(),
        ];
        want.sort();
        let mut watched = files.watched.clone();
        watched.sort();
        assert_eq!(watched, want);
        assert!(
            files
                .names
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&OsString::from("w2.yaml")),
            "the new name"
        );
    }
}
