//! `ctictl`: the command-line client of ctid. Registers DNs, queries them, drives hot desking,
//! watches events and sends raw requests; `ctictl csta ...` holds the CSTA codec tools.
//!
//! Exit status: 0 success; 1 EventError or timeout; 2 usage or connection error.
#![deny(unsafe_code)]

#[allow(unused_variables)] // the slot's placeholder does not use its arguments yet
mod csta_cmd;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ctid_client::{display, Client, Error, Received};
use ctid_protocol::json::Value;
use ctid_protocol::{AddressInfoType, EventName, Request, RequestName};

#[derive(Parser, Debug)]
#[command(name = "ctictl", version, about = "Command-line client for ctid")]
struct Cli {
    /// WebSocket URL of the ctid server.
    #[arg(long, global = true, default_value = "ws://127.0.0.1:7000/ws")]
    server: String,
    /// Print events as received, one JSON object per line.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for each answer (for `watch`: seconds of silence before stopping; 0 = wait
    /// forever).
    #[arg(long, global = true, default_value_t = 5.0)]
    timeout: f64,
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
    /// Register DNs and print every event as it arrives.
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
    /// CSTA codec tools (decode/encode); arguments are passed through.
    #[command(disable_help_flag = true)]
    Csta {
        /// Arguments of the csta tool.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
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
    if let Command::Csta { args } = &cli.command {
        return match csta_cmd::run(args) {
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
    match runtime.block_on(run(&cli)) {
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

impl Ctl<'_> {
    fn print(&self, r: &Received) {
        if self.cli.json {
            println!("{}", r.raw);
        } else {
            println!("{}", display::event_line(&r.raw));
        }
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
}

async fn run(cli: &Cli) -> Result<Outcome, Error> {
    let client = Client::connect(&cli.server).await?;
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
        Command::Watch { dns, count } => watch(&mut ctl, dns, *count).await?,
        Command::Send { text } => send(&mut ctl, text).await?,
        Command::Csta { .. } => unreachable!("handled before connecting"),
    };
    let _ = ctl.client.close().await;
    Ok(outcome)
}

/// Prints every event: those received before and during the registrations (in order, the
/// EventRegistered answers among them), then new ones until `count` more or a silence of
/// `--timeout` seconds (0: no limit).
async fn watch(ctl: &mut Ctl<'_>, dns: &[String], count: Option<u64>) -> Result<Outcome, Error> {
    let mut registered = true;
    for dn in dns {
        let mut req = Request::register_address(dn.as_str());
        let id = ctl.client.send(&mut req).await?;
        // print what arrives before the answer, then the answer itself
        loop {
            let Some(r) = ctl.client.next_received(ctl.timeout).await? else {
                return Err(Error::Timeout {
                    request: RequestName::RequestRegisterAddress.to_string(),
                    reference_id: id,
                    timeout: ctl.timeout,
                });
            };
            ctl.print(&r);
            if r.event.reference_id == Some(id) {
                registered &= !r.event.is_error();
                break;
            }
        }
    }
    if !registered {
        return Ok(Outcome::Failed);
    }
    let silence = if ctl.timeout.is_zero() {
        Duration::from_secs(100 * 365 * 86_400) // "forever", without overflowing Instant
    } else {
        ctl.timeout
    };
    let mut seen = 0u64;
    while count.is_none_or(|n| seen < n) {
        match ctl.client.next_received(silence).await {
            Ok(Some(r)) => {
                ctl.print(&r);
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
            Err(Error::Closed) => return Ok(Outcome::Failed),
            Err(e) => return Err(e),
        }
    }
    Ok(Outcome::Ok)
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
