//! iotsafe-sim: a GSMA IoT SAFE applet that plugs into pcscd as a virtual
//! card through the vpcd reader driver.

mod apdu;
mod applet;
mod crypto;
mod hex;
mod modem;
mod provision;
mod state;
mod tlv;
mod vpcd;

use applet::{Applet, ClaStyle, Config, SigLen};
use clap::{Parser, ValueEnum};
use provision::Layout;
use state::{ObjRef, Store};
use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ClaArg {
    #[value(name = "00")]
    Cla00,
    #[value(name = "80")]
    Cla80,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum CurveArg {
    #[value(name = "p256", alias = "P-256")]
    P256,
    #[value(name = "brainpoolP256r1")]
    BrainpoolP256r1,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SigLenArg {
    Short,
    Long,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PastEndArg {
    #[value(name = "6A86", alias = "6a86")]
    Sw6A86,
    #[value(name = "6981")]
    Sw6981,
}

/// GSMA IoT SAFE applet simulator for pcscd's vpcd reader driver.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// vpcd reader driver address to connect to
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:35963")]
    vpcd: String,
    /// Serve as a modem instead: answer AT+CSIM on a pseudo-terminal linked at PATH
    #[arg(long, value_name = "PATH")]
    modem: Option<PathBuf>,
    /// State file (keys, files, counters); without it nothing persists
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Create the device key pair and a certificate when the card is empty
    #[arg(long)]
    provision: bool,
    /// Certificate (PEM or DER) to store as the certificate file; replaces an existing one
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// P-256 private key (PEM or DER) to use as the device key; replaces an existing one
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Id of the device private key
    #[arg(long, value_name = "HEX", default_value = "01")]
    key_id: String,
    /// Id of the device public key [default: the private key id]
    #[arg(long, value_name = "HEX")]
    pub_key_id: Option<String>,
    /// Label shared by the device private and public keys
    #[arg(long, value_name = "S", default_value = "DEVICE")]
    key_label: String,
    /// Id of the certificate file
    #[arg(long, value_name = "HEX", default_value = "02")]
    cert_id: String,
    /// Label of the certificate file
    #[arg(long, value_name = "S", default_value = "DEVICE-CERT")]
    cert_label: String,
    /// Applet AID (repeat for several); default GSMA A0000005590010
    #[arg(long = "aid", value_name = "HEX")]
    aids: Vec<String>,
    /// Another vendor's applet AID, selectable beside ours, that answers 6D00 to everything
    #[arg(long, value_name = "HEX")]
    foreign_aid: Option<String>,
    /// CLA of the applet commands on channel n: 00 -> 0x0n, 80 -> 0x8n
    #[arg(long, value_enum, default_value = "00")]
    cla_style: ClaArg,
    /// Curve of the card's EC keys (keys in a state file must be on it)
    #[arg(long, value_enum, default_value = "p256")]
    curve: CurveArg,
    /// Signature response: short = 33 40 r||s, long = 33 00 40 r||s
    #[arg(long, value_enum, default_value = "short")]
    sig_len: SigLenArg,
    /// Behave as a T=0 card (61xx + GET RESPONSE, 6Cxx)
    #[arg(long)]
    t0: bool,
    /// Largest object-list response before 6300 paging
    #[arg(long, value_name = "N", default_value_t = 200)]
    page_size: usize,
    /// Status word for READ FILE at or past the end of the file
    #[arg(long, value_enum, default_value = "6A86")]
    read_past_end: PastEndArg,
    /// Announce this file size (tag 20 value, hex, e.g. FFFFFFFFFF) for every file, as a
    /// broken or hostile card would
    #[arg(long, value_name = "HEX")]
    file_size: Option<String>,
    /// Delay before answering each APDU
    #[arg(long, value_name = "N", default_value_t = 0)]
    apdu_latency_ms: u64,
    /// Append "<command hex> <response hex>" per APDU to this file
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Drop the vpcd connection on the N-th APDU (card pulled) and exit 3
    #[arg(long, value_name = "N")]
    fail_after: Option<u64>,
    /// ATR to send instead of the built-in one
    #[arg(long, value_name = "HEX")]
    atr: Option<String>,
    /// Print the device public key (PEM) and exit
    #[arg(long)]
    print_pubkey: bool,
    /// Print the certificate (PEM) and exit
    #[arg(long)]
    print_cert: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("iotsafe-sim: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    crypto::set_curve(match cli.curve {
        CurveArg::P256 => crypto::Curve::P256,
        CurveArg::BrainpoolP256r1 => crypto::Curve::BrainpoolP256r1,
    });
    let layout = layout(&cli)?;
    let mut store = match &cli.state {
        Some(p) => Store::open(p).map_err(|e| format!("{}: {e}", p.display()))?,
        None => Store::volatile(),
    };
    prepare_store(&cli, &layout, &mut store)?;
    if cli.print_pubkey || cli.print_cert {
        return print_objects(&cli, &layout, &store).map(|_| ExitCode::SUCCESS);
    }
    let cfg = config(&cli)?;
    let opts = vpcd_options(&cli)?;
    vpcd::install_signal_handlers();
    let mut applet = Applet::new(cfg, store);
    let exit = match &cli.modem {
        Some(link) => modem::run(&mut applet, opts, link)
            .map_err(|e| format!("modem {}: {e}", link.display()))?,
        None => vpcd::run(&mut applet, opts),
    };
    applet.flush();
    match exit {
        vpcd::Exit::Signalled => Ok(ExitCode::SUCCESS),
        vpcd::Exit::Pulled => {
            eprintln!("iotsafe-sim: card pulled (--fail-after)");
            Ok(ExitCode::from(3))
        }
    }
}

fn parse_id(s: &str, what: &str) -> Result<Vec<u8>, String> {
    let id = hex::decode(s).map_err(|e| format!("{what}: {e}"))?;
    if id.is_empty() || id.len() > 20 {
        return Err(format!("{what}: an id is 1 to 20 bytes"));
    }
    Ok(id)
}

fn layout(cli: &Cli) -> Result<Layout, String> {
    let key_id = parse_id(&cli.key_id, "--key-id")?;
    let pub_key_id = match &cli.pub_key_id {
        Some(s) => parse_id(s, "--pub-key-id")?,
        None => key_id.clone(),
    };
    Ok(Layout {
        key_id,
        pub_key_id,
        key_label: cli.key_label.clone().into_bytes(),
        cert_id: parse_id(&cli.cert_id, "--cert-id")?,
        cert_label: cli.cert_label.clone().into_bytes(),
    })
}

/// Applies --provision, --key and --cert, and saves if anything changed.
fn prepare_store(cli: &Cli, l: &Layout, store: &mut Store) -> Result<(), String> {
    let read = |p: &PathBuf| fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let key = cli
        .key
        .as_ref()
        .map(|p| read(p).and_then(|b| provision::load_private_key(&b)))
        .transpose()?;
    let mut changed = false;
    if cli.provision && store.is_empty() {
        provision::provision(store, l, key.clone())?;
        changed = true;
    } else if let Some(d) = key {
        provision::set_key(store, l, d)?;
        changed = true;
    }
    if let Some(p) = &cli.cert {
        provision::set_cert(store, l, &read(p)?)?;
        changed = true;
    }
    if changed {
        store
            .save()
            .map_err(|e| format!("cannot save state: {e}"))?;
    }
    Ok(())
}

fn print_objects(cli: &Cli, l: &Layout, store: &Store) -> Result<(), String> {
    if cli.print_pubkey {
        let key = store
            .public(&ObjRef::Id(l.pub_key_id.clone()))
            .and_then(|k| k.q.as_ref())
            .ok_or("no public key with that id")?;
        let pem = crypto::public_key_pem(key).map_err(|e| e.to_string())?;
        print!("{}", String::from_utf8_lossy(&pem));
    }
    if cli.print_cert {
        let file = store
            .file(&ObjRef::Id(l.cert_id.clone()))
            .ok_or("no certificate file with that id")?;
        let cert = openssl::x509::X509::from_der(&file.data).map_err(|e| e.to_string())?;
        let pem = cert.to_pem().map_err(|e| e.to_string())?;
        print!("{}", String::from_utf8_lossy(&pem));
    }
    Ok(())
}

fn config(cli: &Cli) -> Result<Config, String> {
    let mut cfg = Config::default();
    if !cli.aids.is_empty() {
        cfg.aids = cli
            .aids
            .iter()
            .map(|a| hex::decode(a).map_err(|e| format!("--aid: {e}")))
            .collect::<Result<_, _>>()?;
        if cfg.aids.iter().any(|a| !(5..=16).contains(&a.len())) {
            return Err("--aid: an AID is 5 to 16 bytes".into());
        }
    }
    cfg.foreign_aid = cli
        .foreign_aid
        .as_deref()
        .map(|a| hex::decode(a).map_err(|e| format!("--foreign-aid: {e}")))
        .transpose()?;
    cfg.cla_style = match cli.cla_style {
        ClaArg::Cla00 => ClaStyle::Interindustry,
        ClaArg::Cla80 => ClaStyle::Proprietary,
    };
    cfg.sig_len = match cli.sig_len {
        SigLenArg::Short => SigLen::Short,
        SigLenArg::Long => SigLen::Long,
    };
    cfg.t0 = cli.t0;
    cfg.page_size = cli.page_size.clamp(16, 256);
    cfg.read_past_end = match cli.read_past_end {
        PastEndArg::Sw6A86 => apdu::sw::INCORRECT_P1P2,
        PastEndArg::Sw6981 => apdu::sw::INCOMPATIBLE_FILE,
    };
    cfg.file_size = cli
        .file_size
        .as_deref()
        .map(|s| hex::decode(s).map_err(|e| format!("--file-size: {e}")))
        .transpose()?;
    Ok(cfg)
}

fn vpcd_options(cli: &Cli) -> Result<vpcd::Options, String> {
    let atr = match &cli.atr {
        Some(a) => hex::decode(a).map_err(|e| format!("--atr: {e}"))?,
        None => vpcd::default_atr(cli.t0),
    };
    let trace = cli
        .trace
        .as_ref()
        .map(|p| {
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("{}: {e}", p.display()))
        })
        .transpose()?;
    Ok(vpcd::Options {
        addr: cli.vpcd.clone(),
        atr,
        latency: Duration::from_millis(cli.apdu_latency_ms),
        trace,
        fail_after: cli.fail_after,
    })
}
