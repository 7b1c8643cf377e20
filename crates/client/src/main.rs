//! `ctictl`: the command-line client of ctid. Registers DNs, queries them, drives hot desking,
//! makes and handles calls, logs agents in and out, watches events and sends raw requests;
//! `ctictl csta ...` holds the CSTA codec tools; `ctictl ha ...` shows a pair of nodes and asks
//! for a switchover.
//!
//! `--server` takes one URL or a comma-separated list (a pair of ctid nodes, docs/protocol.md
//! §6.10): every command connects to whichever node serves, following a close 4010 to the
//! primary it names.
//!
//! Exit status: 0 success; 1 EventError or timeout; 2 usage or connection error.
#![deny(unsafe_code)]

mod csta_cmd;
mod ha_cmd;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ctid_client::{
    display, is_resume_refusal, Client, Error, Received, ResumeOptions, ResumingClient,
};
use ctid_protocol::json::Value;
use ctid_protocol::{
    AddressInfoType, AgentWorkMode, ConnId, EventName, PartyState, Request, RequestName,
};

#[derive(Parser, Debug)]
#[command(name = "ctictl", version, about = "Command-line client for ctid")]
struct Cli {
    /// WebSocket URL of the ctid server, or a comma-separated list of the nodes of a pair
    /// (ws://a:7000/ws,ws://b:7000/ws): the one that serves is used.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        default_value = "ws://127.0.0.1:7000/ws"
    )]
    server: String,
    /// Print events as received, one JSON object per line.
    #[arg(long, global = true, help_heading = "Global options")]
    json: bool,
    /// Seconds to wait for each answer (for `watch`: seconds of silence before stopping; 0 = wait
    /// forever).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        default_value_t = 5.0
    )]
    timeout: f64,
    /// Bearer token for a ctid with `auth = "token"` (default: $CTID_TOKEN); sent as `?token=`.
    #[arg(long, global = true, help_heading = "Global options")]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Register DNs (RequestRegisterAddress, ModeShare) and print each EventRegistered.
    Register {
        /// DNs to register.
        #[arg(required = true)]
        dns: Vec<String>,
    },
    /// Register then unregister a DN; print EventUnregistered.
    Unregister {
        /// The DN.
        dn: String,
    },
    /// Register a DN, then query it (RequestQueryAddress); print EventAddressInfo.
    Query {
        /// The DN.
        dn: String,
        /// InfoType to ask for.
        #[arg(long, value_enum, default_value = "dn-status")]
        info: InfoArg,
    },
    /// Hot desking (RequestPrivateService 1 and 2).
    Hotdesk {
        #[command(subcommand)]
        action: Hotdesk,
    },
    /// Calls: make, answer, release, hold, retrieve, transfer, conference (registers the DN
    /// first).
    Call {
        #[command(subcommand)]
        action: Call,
    },
    /// Agents: login, ready, notready, logout (registers the DN first).
    Agent {
        #[command(subcommand)]
        action: Agent,
    },
    /// User data of a call: attach (append) or update (replace keys).
    Userdata {
        #[command(subcommand)]
        action: Userdata,
    },
    /// Register DNs and print every event as it arrives. A lost connection is resumed (no event
    /// lost or repeated); if the session cannot be resumed the DNs are registered again.
    Watch {
        /// DNs to register (none: only the events every client gets).
        dns: Vec<String>,
        /// Stop after this many events following the registrations (exit 1 if silence comes
        /// first).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Send one raw request (a ReferenceID is added if absent) and print its answer.
    Send {
        /// The request JSON; text that is not a JSON object is sent as it is.
        #[arg(value_name = "JSON")]
        text: String,
    },
    /// A pair of nodes: their state (GET /api/ha) and a planned switchover.
    Ha {
        #[command(subcommand)]
        action: Ha,
    },
    /// CSTA XML codec tools, no server needed: decode a document to JSON, encode JSON back.
    Csta {
        #[command(subcommand)]
        action: csta_cmd::Csta,
    },
}

#[derive(Subcommand, Debug)]
enum Ha {
    /// GET /api/ha on each listed server: node, role, term, lease holder, applied_seq, lag,
    /// ready (--json: the answers).
    Status,
    /// POST /admin/ha/switchover to the primary: it hands over to a ready backup.
    Switchover {
        /// The node to hand over to (default: the primary picks a ready backup).
        #[arg(long, value_name = "NODE")]
        to: Option<String>,
        /// Admin token (default: $CTID_ADMIN_TOKEN).
        #[arg(long)]
        admin_token: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum Hotdesk {
    /// Register the guest, then associate it with the host (PrivateMsgID 1, Extensions HOST_DN).
    Initiate {
        /// The guest DN (ThisDN).
        #[arg(long)]
        guest: String,
        /// The host DN (Extensions HOST_DN).
        #[arg(long)]
        host: String,
    },
    /// Register the guest, then cancel its association (PrivateMsgID 2).
    Cancel {
        /// The guest DN (ThisDN).
        #[arg(long)]
        guest: String,
    },
}

#[derive(Subcommand, Debug)]
enum Call {
    /// RequestMakeCall from a DN to a number; prints EventDialing. `call make A B` or
    /// `call make --from A --to B`.
    Make {
        /// The calling DN (ThisDN).
        #[arg(long)]
        from: Option<String>,
        /// The number to call (OtherDN).
        #[arg(long)]
        to: Option<String>,
        /// FROM TO, as positional arguments.
        #[arg(value_name = "FROM TO", num_args = 0..=2)]
        pos: Vec<String>,
    },
    /// RequestAnswerCall; prints EventEstablished. Without --conn: the DN's ringing call.
    Answer(CallOn),
    /// RequestReleaseCall; prints EventReleased. Without --conn: the DN's active call, else its
    /// ringing or dialling one, else its held one.
    Release(CallOn),
    /// RequestHoldCall; prints EventHeld. Without --conn: the DN's active call.
    Hold(CallOn),
    /// RequestRetrieveCall; prints EventRetrieved. Without --conn: the DN's held call.
    Retrieve(CallOn),
    /// Transfer the DN's active call to TO: RequestInitiateTransfer, wait for TO to answer,
    /// RequestCompleteTransfer; prints EventReleased. --single-step: RequestSingleStepTransfer.
    Transfer {
        #[command(flatten)]
        on: CallOn,
        /// The transfer target (OtherDN).
        #[arg(long)]
        to: String,
        /// Transfer without consulting (RequestSingleStepTransfer).
        #[arg(long)]
        single_step: bool,
    },
    /// Conference TO into the DN's active call: RequestInitiateConference, wait for TO to
    /// answer, RequestCompleteConference; prints EventPartyAdded.
    Conference {
        #[command(flatten)]
        on: CallOn,
        /// The party to add (OtherDN).
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand, Debug)]
enum Userdata {
    /// RequestAttachUserData (appends the pairs); prints EventAttachedDataChanged.
    Attach {
        #[command(flatten)]
        on: CallOn,
        /// KEY=VALUE pairs.
        #[arg(long = "set", value_name = "KEY=VALUE", required = true)]
        pairs: Vec<String>,
    },
    /// RequestUpdateUserData (replaces the keys given); prints EventAttachedDataChanged.
    Update {
        #[command(flatten)]
        on: CallOn,
        /// KEY=VALUE pairs.
        #[arg(long = "set", value_name = "KEY=VALUE", required = true)]
        pairs: Vec<String>,
    },
}

/// The DN and, optionally, the call a call command acts on.
#[derive(clap::Args, Debug)]
struct CallOn {
    /// The DN (ThisDN), or as the positional DN.
    #[arg(long = "dn", value_name = "DN")]
    dn_flag: Option<String>,
    /// The DN (ThisDN).
    #[arg(value_name = "DN", required_unless_present = "dn_flag")]
    dn_pos: Option<String>,
    /// The call's ConnID (16 hex digits); default: found with RequestQueryAddress.
    #[arg(long, value_parser = parse_conn_id)]
    conn: Option<ConnId>,
}

impl CallOn {
    /// The DN, given either way.
    fn dn(&self) -> &str {
        self.dn_flag
            .as_deref()
            .or(self.dn_pos.as_deref())
            .unwrap_or_default()
    }
}

fn parse_conn_id(s: &str) -> Result<ConnId, String> {
    ConnId::parse(s).ok_or_else(|| format!("{s:?} is not a ConnID (16 hex digits)"))
}

#[derive(Subcommand, Debug)]
enum Agent {
    /// RequestAgentLogin; prints EventAgentLogin.
    Login {
        /// The DN (ThisDN).
        #[arg(long)]
        dn: String,
        /// The agent ID (AgentID).
        #[arg(long)]
        agent: String,
        /// The ACD queue to log in to (ThisQueue).
        #[arg(long)]
        queue: Option<String>,
        /// The agent's password (Password).
        #[arg(long)]
        password: Option<String>,
    },
    /// RequestAgentReady; prints EventAgentReady.
    Ready {
        /// The DN (ThisDN).
        #[arg(long)]
        dn: String,
    },
    /// RequestAgentNotReady; prints EventAgentNotReady.
    Notready {
        /// The DN (ThisDN).
        #[arg(long)]
        dn: String,
        /// After-call work (AgentWorkMode AgentAfterCallWork) instead of plain not ready.
        #[arg(long)]
        acw: bool,
    },
    /// RequestAgentLogout; prints EventAgentLogout.
    Logout {
        /// The DN (ThisDN).
        #[arg(long)]
        dn: String,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum InfoArg {
    /// AddressInfoDNStatus
    DnStatus,
    /// AddressInfoAddressType
    AddressType,
}

/// How a command ended, mapped onto the exit status.
enum Outcome {
    Ok,
    /// EventError, timeout, or an incomplete watch: exit 1.
    Failed,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Csta { action } = &cli.command {
        return match csta_cmd::run(action) {
            Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(2)),
            Err(e) => {
                eprintln!("ctictl csta: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if !(cli.timeout.is_finite() && cli.timeout >= 0.0) {
        eprintln!("ctictl: --timeout must be a number of seconds >= 0");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ctictl: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(servers) = server_list(&cli.server) else {
        eprintln!("ctictl: --server names no URL");
        return ExitCode::from(2);
    };
    if let Command::Ha { action } = &cli.command {
        let timeout = Duration::from_secs_f64(cli.timeout).max(Duration::from_secs(1));
        let bearer = client_token(&cli);
        let code = match action {
            Ha::Status => runtime.block_on(ha_cmd::status(
                &servers,
                bearer.as_deref(),
                cli.json,
                timeout,
            )),
            Ha::Switchover { to, admin_token } => {
                let admin = admin_token
                    .clone()
                    .or_else(|| std::env::var("CTID_ADMIN_TOKEN").ok())
                    .filter(|t| !t.is_empty());
                let Some(admin) = admin else {
                    eprintln!(
                        "ctictl: ha switchover needs an admin token: --admin-token or $CTID_ADMIN_TOKEN"
                    );
                    return ExitCode::from(2);
                };
                runtime.block_on(ha_cmd::switchover(
                    &servers,
                    bearer.as_deref(),
                    &admin,
                    to.as_deref(),
                    timeout,
                ))
            }
        };
        return ExitCode::from(code);
    }
    match runtime.block_on(run(&cli, &servers)) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        Err(e @ Error::Timeout { .. }) => {
            eprintln!("ctictl: timeout: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("ctictl: {e}");
            ExitCode::from(2)
        }
    }
}

struct Ctl<'a> {
    cli: &'a Cli,
    client: Client,
    timeout: Duration,
}

/// Prints one event: as received with `--json`, else as one readable line.
fn print(cli: &Cli, r: &Received) {
    if cli.json {
        println!("{}", r.raw);
    } else {
        println!("{}", display::event_line(&r.raw));
    }
}

impl Ctl<'_> {
    fn print(&self, r: &Received) {
        print(self.cli, r);
    }

    /// Sends `req`, prints its answer, and says whether it succeeded.
    async fn ask(&mut self, mut req: Request, print: bool) -> Result<bool, Error> {
        let answer = self.client.request_received(&mut req, self.timeout).await?;
        if print || answer.event.is_error() {
            self.print(&answer);
        }
        Ok(!answer.event.is_error())
    }

    async fn register(&mut self, dn: &str, print: bool) -> Result<bool, Error> {
        self.ask(Request::register_address(dn), print).await
    }

    /// Registers `on.dn`, finds the call (`--conn`, else the first call on the DN in the first
    /// of `states` that has one, from RequestQueryAddress's `conn-N`/`ps-N`), sends `name` on
    /// it and prints the answer. `what` (with a trailing space) names the call looked for.
    async fn call(
        &mut self,
        name: RequestName,
        on: &CallOn,
        states: &[PartyState],
        what: &str,
    ) -> Result<bool, Error> {
        if !self.register(on.dn(), false).await? {
            return Ok(false);
        }
        let conn = match on.conn {
            Some(c) => c,
            None => match self.find_call(on.dn(), states).await? {
                Lookup::Found(c) => c,
                Lookup::Failed => return Ok(false),
                Lookup::None => {
                    eprintln!("ctictl: no {what}call on {}; give --conn", on.dn());
                    return Ok(false);
                }
            },
        };
        let mut req = Request::new(name).with_this_dn(on.dn());
        req.conn_id = Some(conn);
        self.ask(req, true).await
    }

    /// The call a command acts on: `--conn`, else the DN's first call in one of `states`.
    async fn pick(&mut self, on: &CallOn, states: &[PartyState]) -> Result<Option<ConnId>, Error> {
        if !self.register(on.dn(), false).await? {
            return Ok(None);
        }
        if let Some(c) = on.conn {
            return Ok(Some(c));
        }
        match self.find_call(on.dn(), states).await? {
            Lookup::Found(c) => Ok(Some(c)),
            Lookup::Failed => Ok(None),
            Lookup::None => {
                eprintln!("ctictl: no active call on {}; give --conn", on.dn());
                Ok(None)
            }
        }
    }

    /// Two-step transfer or conference: consult `to`, wait until it answers, complete.
    async fn two_step(&mut self, on: &CallOn, to: &str, conference: bool) -> Result<bool, Error> {
        use RequestName as R;
        let Some(orig) = self.pick(on, &[PartyState::Connected]).await? else {
            return Ok(false);
        };
        let dn = on.dn().to_string();
        let init = if conference {
            R::RequestInitiateConference
        } else {
            R::RequestInitiateTransfer
        };
        let mut req = Request::new(init)
            .with_this_dn(dn.as_str())
            .with_other_dn(to);
        req.conn_id = Some(orig);
        let dialing = self.client.request_received(&mut req, self.timeout).await?;
        self.print(&dialing);
        let Some(consult) = dialing.event.conn_id.filter(|_| !dialing.event.is_error()) else {
            return Ok(false);
        };
        // Wait for the consulted party to answer (EventEstablished on our DN for the consultation).
        let answered = self
            .client
            .wait_for(
                self.timeout.max(Duration::from_secs(30)),
                "answer of the consulted party",
                0,
                |e| {
                    e.name == ctid_protocol::EventName::EventEstablished
                        && e.conn_id == Some(consult)
                        && e.this_dn.as_deref() == Some(dn.as_str())
                },
            )
            .await?;
        self.print(&answered);
        let complete = if conference {
            R::RequestCompleteConference
        } else {
            R::RequestCompleteTransfer
        };
        let mut req = Request::new(complete).with_this_dn(dn.as_str());
        req.conn_id = Some(consult);
        if conference {
            req.conference_conn_id = Some(orig);
        } else {
            req.transfer_conn_id = Some(orig);
        }
        self.ask(req, true).await
    }

    async fn user_data(
        &mut self,
        on: &CallOn,
        pairs: &[String],
        update: bool,
    ) -> Result<bool, Error> {
        let mut data = ctid_protocol::KvList::new();
        for p in pairs {
            let Some((k, v)) = p.split_once('=') else {
                eprintln!("ctictl: {p:?} is not KEY=VALUE");
                return Ok(false);
            };
            data.insert_str(k, v);
        }
        let states = [
            PartyState::Connected,
            PartyState::Alerting,
            PartyState::Held,
            PartyState::Initiated,
            PartyState::Queued,
        ];
        let Some(conn) = self.pick(on, &states).await? else {
            return Ok(false);
        };
        let name = if update {
            RequestName::RequestUpdateUserData
        } else {
            RequestName::RequestAttachUserData
        };
        let mut req = Request::new(name).with_this_dn(on.dn());
        req.conn_id = Some(conn);
        req.user_data = Some(data);
        self.ask(req, true).await
    }

    async fn find_call(&mut self, dn: &str, states: &[PartyState]) -> Result<Lookup, Error> {
        let mut req = Request::query_address(dn, AddressInfoType::DnStatus);
        let answer = self.client.request_received(&mut req, self.timeout).await?;
        if answer.event.is_error() {
            self.print(&answer);
            return Ok(Lookup::Failed);
        }
        let calls = calls_of(&answer.event);
        for state in states {
            if let Some((c, _)) = calls.iter().find(|(_, s)| s == state.as_str()) {
                return Ok(Lookup::Found(*c));
            }
        }
        Ok(Lookup::None)
    }

    async fn agent(&mut self, dn: &str, req: Request) -> Result<bool, Error> {
        Ok(self.register(dn, false).await? && self.ask(req, true).await?)
    }
}

enum Lookup {
    Found(ConnId),
    None,
    /// The query failed (its EventError is printed).
    Failed,
}

/// The calls in a DN status (`conn-1`/`ps-1`, `conn-2`/`ps-2`, ...), in order.
fn calls_of(ev: &ctid_protocol::Event) -> Vec<(ConnId, String)> {
    let mut v = Vec::new();
    for n in 1.. {
        let Some(conn) = ev.extension_str(&format!("conn-{n}")) else {
            break;
        };
        let state = ev.extension_str(&format!("ps-{n}")).unwrap_or_default();
        if let Some(c) = ConnId::parse(conn) {
            v.push((c, state.to_owned()));
        }
    }
    v
}

/// The URLs of `--server` (comma-separated); `None` if there is none.
fn server_list(server: &str) -> Option<Vec<String>> {
    let v: Vec<String> = server
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    (!v.is_empty()).then_some(v)
}

/// The client token: `--token`, else $CTID_TOKEN.
fn client_token(cli: &Cli) -> Option<String> {
    cli.token
        .clone()
        .or_else(|| std::env::var("CTID_TOKEN").ok())
        .filter(|t| !t.is_empty())
}

/// The WebSocket URLs to try: each of `servers` with the token as `?token=` (or `&token=`).
fn ws_urls(cli: &Cli, servers: &[String]) -> Vec<String> {
    let token = client_token(cli);
    servers
        .iter()
        .map(|server| match &token {
            Some(t) => {
                let sep = if server.contains('?') { '&' } else { '?' };
                format!("{server}{sep}token={}", ha_cmd::percent_encode(t))
            }
            None => server.clone(),
        })
        .collect()
}

/// Connects to whichever server of the list serves (docs/protocol.md §6.10): a node that is not
/// primary closes with 4010 and names the primary, which is tried at once; refusals move on to
/// the next URL. The search lasts `--timeout` (at least 1 s).
async fn connect(cli: &Cli, urls: &[String]) -> Result<Client, Error> {
    let opts = ResumeOptions {
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
        give_up_after: Duration::from_secs_f64(cli.timeout).max(Duration::from_secs(1)),
    };
    Client::connect_any(urls, opts).await
}

async fn run(cli: &Cli, servers: &[String]) -> Result<Outcome, Error> {
    let urls = ws_urls(cli, servers);
    if let Command::Watch { dns, count } = &cli.command {
        return watch(cli, &urls, dns, *count).await;
    }
    let client = connect(cli, &urls).await?;
    let timeout = Duration::from_secs_f64(cli.timeout);
    let mut ctl = Ctl {
        cli,
        client,
        timeout,
    };
    let ok = |b: bool| if b { Outcome::Ok } else { Outcome::Failed };
    let outcome = match &cli.command {
        Command::Register { dns } => {
            let mut all = true;
            for dn in dns {
                all &= ctl.register(dn, true).await?;
            }
            ok(all)
        }
        Command::Unregister { dn } => ok(ctl.register(dn, false).await?
            && ctl.ask(Request::unregister_address(dn), true).await?),
        Command::Query { dn, info } => {
            let info = match info {
                InfoArg::DnStatus => AddressInfoType::DnStatus,
                InfoArg::AddressType => AddressInfoType::AddressType,
            };
            ok(ctl.register(dn, false).await?
                && ctl.ask(Request::query_address(dn, info), true).await?)
        }
        Command::Hotdesk { action } => match action {
            Hotdesk::Initiate { guest, host } => {
                let req = Request::private_service(guest, 1).with_extension("HOST_DN", host);
                ok(ctl.register(guest, false).await? && ctl.ask(req, true).await?)
            }
            Hotdesk::Cancel { guest } => ok(ctl.register(guest, false).await?
                && ctl.ask(Request::private_service(guest, 2), true).await?),
        },
        Command::Call { action } => {
            use PartyState as P;
            use RequestName as R;
            ok(match action {
                Call::Make { from, to, pos } => {
                    let from = from.clone().or_else(|| pos.first().cloned());
                    let to = to.clone().or_else(|| pos.get(1).cloned());
                    let (Some(from), Some(to)) = (from, to) else {
                        eprintln!("ctictl: call make needs FROM and TO (call make 1001 1002)");
                        std::process::exit(2);
                    };
                    let req = Request::new(R::RequestMakeCall)
                        .with_this_dn(from.as_str())
                        .with_other_dn(to.as_str());
                    ctl.register(&from, false).await? && ctl.ask(req, true).await?
                }
                Call::Transfer {
                    on,
                    to,
                    single_step,
                } => {
                    if *single_step {
                        match ctl.pick(on, &[P::Connected]).await? {
                            Some(c) => {
                                let mut req = Request::new(R::RequestSingleStepTransfer)
                                    .with_this_dn(on.dn())
                                    .with_other_dn(to.as_str());
                                req.conn_id = Some(c);
                                ctl.ask(req, true).await?
                            }
                            None => false,
                        }
                    } else {
                        ctl.two_step(on, to, false).await?
                    }
                }
                Call::Conference { on, to } => ctl.two_step(on, to, true).await?,
                Call::Answer(on) => {
                    ctl.call(R::RequestAnswerCall, on, &[P::Alerting], "ringing ")
                        .await?
                }
                Call::Release(on) => {
                    let states = [P::Connected, P::Alerting, P::Initiated, P::Queued, P::Held];
                    ctl.call(R::RequestReleaseCall, on, &states, "").await?
                }
                Call::Hold(on) => {
                    ctl.call(R::RequestHoldCall, on, &[P::Connected], "active ")
                        .await?
                }
                Call::Retrieve(on) => {
                    ctl.call(R::RequestRetrieveCall, on, &[P::Held], "held ")
                        .await?
                }
            })
        }
        Command::Userdata { action } => ok(match action {
            Userdata::Attach { on, pairs } => ctl.user_data(on, pairs, false).await?,
            Userdata::Update { on, pairs } => ctl.user_data(on, pairs, true).await?,
        }),
        Command::Agent { action } => {
            use RequestName as R;
            ok(match action {
                Agent::Login {
                    dn,
                    agent,
                    queue,
                    password,
                } => {
                    let mut req = Request::new(R::RequestAgentLogin).with_this_dn(dn.as_str());
                    req.agent_id = Some(agent.clone());
                    req.this_queue = queue.clone();
                    req.password = password.clone();
                    ctl.agent(dn, req).await?
                }
                Agent::Ready { dn } => {
                    let req = Request::new(R::RequestAgentReady).with_this_dn(dn.as_str());
                    ctl.agent(dn, req).await?
                }
                Agent::Notready { dn, acw } => {
                    let mut req = Request::new(R::RequestAgentNotReady).with_this_dn(dn.as_str());
                    if *acw {
                        req.agent_work_mode = Some(AgentWorkMode::AfterCallWork);
                    }
                    ctl.agent(dn, req).await?
                }
                Agent::Logout { dn } => {
                    let req = Request::new(R::RequestAgentLogout).with_this_dn(dn.as_str());
                    ctl.agent(dn, req).await?
                }
            })
        }
        Command::Watch { .. } => unreachable!("handled before connecting"),
        Command::Send { text } => send(&mut ctl, text).await?,
        Command::Csta { .. } | Command::Ha { .. } => unreachable!("handled before connecting"),
    };
    let _ = ctl.client.close().await;
    Ok(outcome)
}

/// Prints every event: those received before and during the registrations (in order, the
/// EventRegistered answers among them), then new ones until `count` more or a silence of
/// `--timeout` seconds (0: no limit).
///
/// The session survives a lost connection (docs/protocol.md §6.9): the client reconnects (to
/// whichever listed node serves, §6.10) and resumes it, and the events missed meanwhile are printed in their place, none twice; stderr
/// says so. If ctid refuses the resume (the session expired, or ctid restarted), the DNs are
/// registered again on the new session (stderr says so too) and watching goes on.
async fn watch(
    cli: &Cli,
    urls: &[String],
    dns: &[String],
    count: Option<u64>,
) -> Result<Outcome, Error> {
    let timeout = Duration::from_secs_f64(cli.timeout);
    let silence = if timeout.is_zero() {
        Duration::from_secs(100 * 365 * 86_400) // "forever", without overflowing Instant
    } else {
        timeout
    };
    let mut client = ResumingClient::connect_any(urls, ResumeOptions::default()).await?;
    let outcome = watch_on(cli, &mut client, dns, count, silence).await;
    let _ = client.close().await;
    outcome
}

async fn watch_on(
    cli: &Cli,
    client: &mut ResumingClient,
    dns: &[String],
    count: Option<u64>,
    silence: Duration,
) -> Result<Outcome, Error> {
    if !register_all(cli, client, dns, silence).await? {
        return Ok(Outcome::Failed);
    }
    let mut seen = 0u64;
    while count.is_none_or(|n| seen < n) {
        match client.next_received(silence).await {
            Ok(Some(r)) if r.event.name == EventName::EventSessionResumed => {
                let n = r
                    .event
                    .extensions
                    .as_ref()
                    .and_then(|e| e.get_int("Replayed"))
                    .unwrap_or(0);
                eprintln!("ctictl: connection lost; session resumed, {n} missed events follow");
            }
            Ok(Some(r)) if is_resume_refusal(&r.event) => {
                eprintln!(
                    "ctictl: connection lost; session not resumed ({} {}){}",
                    r.event.error_code.map_or(0, |c| c.0),
                    r.event.error_message.as_deref().unwrap_or(""),
                    if dns.is_empty() {
                        String::new()
                    } else {
                        format!("; registering {} again", dns.join(" "))
                    }
                );
                if !register_all(cli, client, dns, silence).await? {
                    return Ok(Outcome::Failed);
                }
            }
            Ok(Some(r)) => {
                print(cli, &r);
                seen += 1;
                if r.event.name == EventName::EventServerDisconnected {
                    return Ok(Outcome::Failed);
                }
            }
            Ok(None) => {
                return Ok(if count.is_some() {
                    eprintln!(
                        "ctictl: timeout: {seen} of {} events, then {silence:?} of silence",
                        count.unwrap_or(0)
                    );
                    Outcome::Failed
                } else {
                    Outcome::Ok
                })
            }
            Err(Error::Closed | Error::GaveUp { .. }) => return Ok(Outcome::Failed),
            Err(e) => return Err(e),
        }
    }
    Ok(Outcome::Ok)
}

/// Registers each DN, printing what arrives before each answer and the answer itself; false if
/// one was refused.
async fn register_all(
    cli: &Cli,
    client: &mut ResumingClient,
    dns: &[String],
    wait: Duration,
) -> Result<bool, Error> {
    let mut registered = true;
    for dn in dns {
        let mut req = Request::register_address(dn.as_str());
        let id = client.send(&mut req).await?;
        loop {
            let Some(r) = client.next_received(wait).await? else {
                return Err(Error::Timeout {
                    request: RequestName::RequestRegisterAddress.to_string(),
                    reference_id: id,
                    timeout: wait,
                });
            };
            if r.event.name == EventName::EventSessionResumed {
                continue; // a drop while registering: the answer still comes
            }
            print(cli, &r);
            if r.event.reference_id == Some(id) {
                registered &= !r.event.is_error();
                break;
            }
        }
    }
    Ok(registered)
}

/// Sends raw text. A JSON object gets a ReferenceID after `request` if it has none, and its
/// answer is the event with that ReferenceID; for anything else (or an unusable ReferenceID)
/// the answer is the first EventError without a ReferenceID.
async fn send(ctl: &mut Ctl<'_>, text: &str) -> Result<Outcome, Error> {
    let (text, reference_id) = match Value::parse(text) {
        Ok(Value::Object(mut pairs)) => match pairs.iter().find(|(k, _)| k == "ReferenceID") {
            Some((_, v)) => {
                let id = match v {
                    Value::Number(ctid_protocol::json::Number::Int(i)) => u32::try_from(*i)
                        .ok()
                        .filter(|i| (1..=ctid_protocol::REFERENCE_ID_MAX).contains(i)),
                    _ => None,
                };
                (text.to_owned(), id)
            }
            None => {
                let id = ctl.client.allocate_reference_id();
                let at = pairs
                    .iter()
                    .position(|(k, _)| k == "request")
                    .map_or(0, |i| i + 1);
                pairs.insert(
                    at,
                    (
                        "ReferenceID".into(),
                        Value::Number(ctid_protocol::json::Number::Int(i64::from(id))),
                    ),
                );
                (Value::Object(pairs).to_json(), Some(id))
            }
        },
        _ => (text.to_owned(), None),
    };
    ctl.client.send_text(text).await?;
    let answer = ctl
        .client
        .wait_for(
            ctl.timeout,
            "the request",
            reference_id.unwrap_or(0),
            |e| match reference_id {
                Some(id) => e.reference_id == Some(id),
                None => e.is_error() && e.reference_id.is_none(),
            },
        )
        .await?;
    ctl.print(&answer);
    Ok(if answer.event.is_error() {
        Outcome::Failed
    } else {
        Outcome::Ok
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
