//! The shared emulator: the account state (persisted), and the runtime knobs that tests turn
//! (token lifetimes, faults, the rate limit, request counts, webhook delivery log), which are not
//! persisted because they describe a test run rather than the account.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::Serialize;

use crate::faults::Fault;
use crate::state::State;
use crate::{Account, Seed, SimOptions, seed};

/// Webhook deliveries kept for `/__sim/deliveries`.
const MAX_DELIVERIES: usize = 10_000;

pub struct Sim {
    state: Mutex<State>,
    runtime: Mutex<Runtime>,
    pub base_url: String,
    state_file: Option<PathBuf>,
    pub smtp: Option<String>,
    defaults: SimOptions,
    pub http: reqwest::Client,
}

pub struct Runtime {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub faults: Vec<Fault>,
    pub next_fault_id: u64,
    /// Requests per second allowed per api key; `None` = unlimited.
    pub rate_limit: Option<u32>,
    /// Per api key: the start of the current one-second window and the requests seen in it.
    pub rate_windows: HashMap<String, (Instant, u32)>,
    /// (method, templated path, status) → count; status 0 = connection dropped.
    pub requests: BTreeMap<(String, String, u16), u64>,
    pub deliveries: Vec<Delivery>,
    /// Whether the administrator is an Account Config Tool Administrator: group endpoints answer
    /// 403 to anyone else.
    pub config_tool_admin: bool,
    /// The account's Brivo Wallet (Mobile) Passes: invitations beyond it answer 412.
    pub wallet_passes: u64,
}

/// One webhook delivery attempt series, for tests and operators to inspect.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub subscription_id: u64,
    pub url: String,
    pub event_uuid: String,
    pub attempts: u32,
    pub delivered: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub at: Timestamp,
}

impl Runtime {
    fn new(options: &SimOptions) -> Self {
        Self {
            access_ttl: options.access_token_ttl,
            refresh_ttl: options.refresh_token_ttl,
            faults: Vec::new(),
            next_fault_id: 1,
            rate_limit: None,
            rate_windows: HashMap::new(),
            requests: BTreeMap::new(),
            deliveries: Vec::new(),
            config_tool_admin: true,
            wallet_passes: DEFAULT_WALLET_PASSES,
        }
    }
}

/// The allotment in Brivo's documented example (`{"allotted":500,...}`, reference §11): a generous
/// default would hide the 412 from anyone trying the emulator at scale.
pub const DEFAULT_WALLET_PASSES: u64 = 500;

impl Sim {
    pub fn new(base_url: String, options: SimOptions) -> anyhow::Result<Self> {
        let loaded = match &options.state_file {
            Some(path) => State::load(path)?,
            None => None,
        };
        let state = match loaded {
            Some(state) => state,
            None => {
                let account = Account {
                    redirect_uri: options.redirect_uri.clone(),
                    ..Account::default()
                };
                let state = seed::build(options.seed, account, Timestamp::now());
                if let Some(path) = &options.state_file {
                    state.save(path)?;
                }
                state
            }
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            state: Mutex::new(state),
            runtime: Mutex::new(Runtime::new(&options)),
            base_url,
            state_file: options.state_file.clone(),
            smtp: options.smtp.clone(),
            defaults: options,
            http,
        })
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent-enough state for an emulator;
        // keep serving rather than poisoning every later request.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn runtime(&self) -> MutexGuard<'_, Runtime> {
        self.runtime.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock_state())
    }

    /// Runs a mutation and persists the result before the lock is released, so the file
    /// always holds the latest state and writes never reorder.
    pub fn write<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut state = self.lock_state();
        let result = f(&mut state);
        if let Some(path) = &self.state_file
            && let Err(e) = state.save(path)
        {
            tracing::error!(path = %path.display(), error = %e, "could not persist brivo-sim state");
        }
        result
    }

    /// Replaces the account with a fresh seed and clears the runtime knobs.
    pub fn reset(&self, seed: Seed) -> Account {
        let credentials = self.read(|s| s.account.credentials.clone());
        let fresh = seed::build(seed, credentials.clone(), Timestamp::now());
        self.write(|s| *s = fresh);
        *self.runtime() = Runtime::new(&self.defaults);
        credentials
    }

    pub fn access_ttl(&self) -> Duration {
        self.runtime().access_ttl
    }

    pub fn refresh_ttl(&self) -> Duration {
        self.runtime().refresh_ttl
    }

    pub fn record_delivery(&self, delivery: Delivery) {
        let mut rt = self.runtime();
        rt.deliveries.push(delivery);
        if rt.deliveries.len() > MAX_DELIVERIES {
            let excess = rt.deliveries.len() - MAX_DELIVERIES;
            rt.deliveries.drain(..excess);
        }
    }

    pub fn count_request(&self, method: &str, path: String, status: u16) {
        *self
            .runtime()
            .requests
            .entry((method.to_string(), path, status))
            .or_insert(0) += 1;
    }
}
