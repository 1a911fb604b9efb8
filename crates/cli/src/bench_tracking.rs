//! The bench's MLflow runs: recorded pair by pair in the file store as the bench measures
//! them and, when a tracking server is named, sent to it in the background meanwhile, so
//! that what is left to send when the bench ends is the last pair and the reports. The push
//! is hushed while rows are timed (a local server's work would be timing noise).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quantlab_bench::PairDone;
use quantlab_bench::tracking::{BenchRecorder, ui_command};
use quantlab_track::{Background, Gate, Server, Store};

use crate::mlflow_args::{MlflowArgs, send_rest, warn};

/// Where the bench's runs go, and how far they got.
pub struct BenchTracking {
    config: PathBuf,
    quick: bool,
    /// The open store and its folder; `None` when switched off or after a failure (warned).
    store: Option<(Store, PathBuf)>,
    server: Option<Server>,
    gate: Arc<Gate>,
    /// Opened at the first pair: a bench that fails before any leaves no empty experiment.
    recorder: Option<BenchRecorder>,
    background: Option<Background>,
}

impl BenchTracking {
    /// Opens the store `args` names (a failure is one warning, and nothing is recorded).
    pub fn new(args: &MlflowArgs, config: &Path, quick: bool) -> BenchTracking {
        let store = args.open();
        let server = store.as_ref().and_then(|_| args.server());
        BenchTracking {
            config: config.to_path_buf(),
            quick,
            store,
            server,
            gate: Arc::new(Gate::new()),
            recorder: None,
            background: None,
        }
    }

    /// What the bench hushes while it times rows, when runs are being sent.
    pub fn gate(&self) -> Option<Arc<Gate>> {
        self.server.as_ref().map(|_| self.gate.clone())
    }

    /// Records a measured pair and queues its runs for the server.
    pub fn pair(&mut self, p: &PairDone<'_>) {
        let Some((store, _)) = &self.store else {
            return;
        };
        if self.recorder.is_none() {
            match BenchRecorder::open(store, &self.config, self.quick) {
                Ok(r) => {
                    self.background = self.server.as_ref().map(|s| {
                        store.push_in_background(
                            s.clone(),
                            r.experiment_id().clone(),
                            self.gate.clone(),
                        )
                    });
                    self.recorder = Some(r);
                }
                Err(e) => return self.give_up(&e),
            }
        }
        let Some(rec) = self.recorder.as_mut() else {
            return;
        };
        match rec.pair(p) {
            Ok(ids) => {
                if let Some(b) = &self.background {
                    b.send(ids);
                }
            }
            Err(e) => self.give_up(&e),
        }
    }

    /// Stops recording after a store error (warned once; the bench goes on).
    fn give_up(&mut self, e: &quantlab_track::Error) {
        warn(e);
        self.store = None;
        self.recorder = None;
    }

    /// Ends the runs (FINISHED with the reports of `run_dir`, or FAILED when the bench
    /// failed: `None`), says where they are, and sends what the server does not have yet.
    pub fn end(self, run_dir: Option<&Path>) {
        let streamed = self.background.map(Background::finish);
        let (Some((store, root)), Some(rec)) = (self.store, self.recorder) else {
            return;
        };
        let recorded = match run_dir {
            Some(dir) => rec.finish(dir),
            None => rec.fail(),
        };
        match recorded {
            Ok(r) => {
                println!(
                    "MLflow: {} runs in experiment \"{}\" of {}; open them with\n  {}",
                    r.runs,
                    r.experiment,
                    root.display(),
                    ui_command(&root)
                );
                if let Some(server) = &self.server {
                    send_rest(server, &store, &root, &r.experiment, streamed);
                }
            }
            Err(e) => warn(&e),
        }
    }
}
