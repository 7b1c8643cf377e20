//! Load mode: calls placed at a fixed rate between N extensions, each following a call
//! pattern (call, ring, answer, hold, retrieve, transfer, release) with a pause between
//! steps, for a duration. The events go to whatever monitors the CSTA clients (ctid) hold;
//! every second the number of event frames sent is reported.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::DeviceConfig;
use crate::error::SimError;
use crate::Sim;

/// One step of the call pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A dials B (ServiceInitiated, Originated, Delivered).
    Call,
    /// Let it ring one more step.
    Ring,
    /// B answers (Established).
    Answer,
    /// A holds (Held).
    Hold,
    /// A retrieves (Retrieved).
    Retrieve,
    /// A consults C, C answers, A transfers: B talks to C (Held, …, Transfered).
    Transfer,
    /// The call ends (ConnectionCleared).
    Release,
}

impl Step {
    /// Parse one step name.
    pub fn parse(s: &str) -> Option<Step> {
        Some(match s.trim() {
            "call" => Step::Call,
            "ring" => Step::Ring,
            "answer" => Step::Answer,
            "hold" => Step::Hold,
            "retrieve" => Step::Retrieve,
            "transfer" => Step::Transfer,
            "release" => Step::Release,
            _ => return None,
        })
    }

    /// Parse a comma-separated pattern (`call,ring,answer,release`).
    pub fn parse_pattern(s: &str) -> Result<Vec<Step>, String> {
        let v: Vec<Step> = s
            .split(',')
            .filter(|x| !x.trim().is_empty())
            .map(|x| Step::parse(x).ok_or_else(|| format!("unknown step {x:?} (call, ring, answer, hold, retrieve, transfer, release)")))
            .collect::<Result<_, _>>()?;
        if v.first() != Some(&Step::Call) {
            return Err("a pattern starts with call".into());
        }
        Ok(v)
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Number of extensions to use.
    pub devices: usize,
    /// The first extension number (`first`, `first + 1`, …); missing ones are created.
    pub first: u32,
    /// New calls per second.
    pub rate: f64,
    pub pattern: Vec<Step>,
    /// How long to start new calls.
    pub duration: Duration,
    /// Pause after each step.
    pub step: Duration,
}

impl Default for LoadSpec {
    fn default() -> Self {
        LoadSpec {
            devices: 100,
            first: 7000,
            rate: 10.0,
            pattern: vec![Step::Call, Step::Ring, Step::Answer, Step::Release],
            duration: Duration::from_secs(10),
            step: Duration::from_millis(200),
        }
    }
}

/// One second of load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Seconds since the start.
    pub second: u64,
    /// Event frames sent in that second.
    pub events: u64,
    /// Calls started in that second.
    pub calls: u64,
    /// Calls in progress at its end.
    pub active: u64,
}

/// The outcome.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub calls_started: u64,
    pub calls_completed: u64,
    /// Calls whose pattern hit a refusal.
    pub calls_failed: u64,
    /// Ticks with too few idle devices.
    pub skipped: u64,
    /// Event frames sent during the run.
    pub events: u64,
    pub elapsed: Duration,
    pub ticks: Vec<Tick>,
}

impl LoadReport {
    /// Average event frames per second.
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Default)]
struct Shared {
    idle: VecDeque<String>,
    active: u64,
    completed: u64,
    failed: u64,
    started_this_second: u64,
}

async fn one_call(
    sim: &Sim,
    devs: &[String],
    pattern: &[Step],
    step: Duration,
) -> Result<(), SimError> {
    let (a, b) = (&devs[0], &devs[1]);
    let mut transferred = false;
    for s in pattern {
        match s {
            Step::Call => {
                sim.dial(a, b).await?;
            }
            Step::Ring => {}
            Step::Answer => sim.answer(b).await?,
            Step::Hold => sim.hold(a).await?,
            Step::Retrieve => sim.retrieve(a).await?,
            Step::Transfer => {
                let c = &devs[2];
                sim.consult(a, c).await?;
                tokio::time::sleep(step).await;
                sim.answer(c).await?;
                tokio::time::sleep(step).await;
                sim.transfer(a).await?;
                transferred = true;
            }
            Step::Release => {
                if transferred {
                    sim.hangup(b).await?
                } else {
                    sim.hangup(a).await?
                }
            }
        }
        tokio::time::sleep(step).await;
    }
    Ok(())
}

/// Create the load's extensions that do not exist yet (so clients can monitor them before
/// the load starts); returns their numbers.
pub async fn prepare(sim: &Sim, spec: &LoadSpec) -> Vec<String> {
    let mut ids = Vec::with_capacity(spec.devices);
    for i in 0..spec.devices {
        let id = (u64::from(spec.first) + i as u64).to_string();
        match sim.add_device(DeviceConfig::extension(&id)).await {
            Ok(()) | Err(SimError::Csta { .. }) => {} // created, or exists already
            Err(e) => tracing::warn!(device = id, error = %e, "load: cannot create device"),
        }
        ids.push(id);
    }
    ids
}

/// Run the load against `sim`, calling `on_tick` once a second.
pub async fn run(sim: &Sim, spec: &LoadSpec, mut on_tick: impl FnMut(&Tick)) -> LoadReport {
    let per_call = if spec.pattern.contains(&Step::Transfer) {
        3
    } else {
        2
    };
    let shared = Shared {
        idle: prepare(sim, spec).await.into(),
        ..Shared::default()
    };
    let shared = Arc::new(Mutex::new(shared));
    let stats = sim.stats();
    let events0 = stats.events_out.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut report = LoadReport::default();
    let interval = Duration::from_secs_f64(1.0 / spec.rate.max(0.001));
    let mut next_call = tokio::time::Instant::now();
    let mut next_tick = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut last_events = events0;
    let mut second = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    let drain_for = spec.step * (spec.pattern.len() as u32 + 4) + Duration::from_secs(2);
    let stop_at = tokio::time::Instant::now() + spec.duration;
    let end_at = stop_at + drain_for;
    loop {
        let now = tokio::time::Instant::now();
        if now >= end_at || (now >= stop_at && tasks.is_empty()) {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next_call), if now < stop_at => {
                next_call += interval;
                let devs: Option<Vec<String>> = {
                    let mut s = shared.lock().expect("load state");
                    if s.idle.len() >= per_call {
                        s.active += 1;
                        s.started_this_second += 1;
                        Some((0..per_call).filter_map(|_| s.idle.pop_front()).collect())
                    } else {
                        None
                    }
                };
                let Some(devs) = devs else {
                    report.skipped += 1;
                    continue;
                };
                report.calls_started += 1;
                let (sim2, pattern, step, sh) = (sim.clone(), spec.pattern.clone(), spec.step, shared.clone());
                tasks.spawn(async move {
                    let r = one_call(&sim2, &devs, &pattern, step).await;
                    // leave the devices idle whatever happened
                    for d in &devs {
                        for _ in 0..3 {
                            if sim2.hangup(d).await.is_err() {
                                break;
                            }
                        }
                    }
                    let mut s = sh.lock().expect("load state");
                    s.active -= 1;
                    match r {
                        Ok(()) => s.completed += 1,
                        Err(e) => {
                            tracing::debug!(error = %e, "load: call pattern refused");
                            s.failed += 1;
                        }
                    }
                    s.idle.extend(devs);
                });
            }
            _ = tokio::time::sleep_until(next_tick) => {
                next_tick += Duration::from_secs(1);
                second += 1;
                let ev = stats.events_out.load(Ordering::Relaxed);
                let (calls, active) = {
                    let mut s = shared.lock().expect("load state");
                    (std::mem::take(&mut s.started_this_second), s.active)
                };
                let t = Tick { second, events: ev - last_events, calls, active };
                last_events = ev;
                on_tick(&t);
                report.ticks.push(t);
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    tasks.abort_all();
    let s = shared.lock().expect("load state");
    report.calls_completed = s.completed;
    report.calls_failed = s.failed;
    report.events = stats.events_out.load(Ordering::Relaxed) - events0;
    report.elapsed = start.elapsed();
    report
}
