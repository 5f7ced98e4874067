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

use applet::{Applet, ClaStyle, Config, SigLen, MAX_CHANNELS, NAMED_AIDS};
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

/// Where the device's public key lives relative to its private key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LayoutArg {
    /// Private and public key objects share id and label.
    Combined,
    /// The public key is an object of its own: id 03 and label "<key label>-PUB" unless
    /// --pub-key-id / --pub-key-label say otherwise.
    Separate,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SigLenArg {
    Short,
    Long,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum CchoRefusalArg {
    /// No such command: ERROR to AT+CCHO=? and AT+CCHO=...
    Absent,
    /// AT+CCHO=? is OK, opening a channel is not allowed: +CME ERROR: 3
    NotAllowed,
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
    /// Serve as a modem instead: answer AT+CSIM and AT+CCHO/AT+CGLA/AT+CCHC on a
    /// pseudo-terminal linked at PATH
    #[arg(long, value_name = "PATH")]
    modem: Option<PathBuf>,
    /// Modem: keep echoing commands whatever ATE0 says
    #[arg(long)]
    modem_echo: bool,
    /// Modem: send unsolicited +CREG lines between a command's echo and its answer, and after
    #[arg(long)]
    modem_urcs: bool,
    /// Modem: answer each command this late, in two pieces this far apart
    #[arg(long, value_name = "N", default_value_t = 0)]
    modem_slow_ms: u64,
    /// Modem: refuse AT+CCHO (hosts then use AT+CSIM)
    #[arg(long, value_enum, value_name = "HOW")]
    modem_refuse_ccho: Option<CchoRefusalArg>,
    /// Modem: append every AT command line received to this file
    #[arg(long, value_name = "FILE")]
    modem_log: Option<PathBuf>,
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
    /// Id of the device public key [default: the private key id; 03 with --layout separate]
    #[arg(long, value_name = "HEX")]
    pub_key_id: Option<String>,
    /// Label of the device private key (and of its public key with --layout combined)
    #[arg(long, value_name = "S", default_value = "DEVICE")]
    key_label: String,
    /// Id of the certificate file
    #[arg(long, value_name = "HEX", default_value = "02")]
    cert_id: String,
    /// Label of the certificate file
    #[arg(long, value_name = "S", default_value = "DEVICE-CERT")]
    cert_label: String,
    // -- Which real card is played: applet AIDs, logical channels, key object layout.
    /// Applet AID in hex, or gsma, thales or cira (repeat for several); default gsma
    #[arg(long = "aid", value_name = "HEX|NAME")]
    aids: Vec<String>,
    /// Logical channels including the basic one, 1 (none) to 20 (channels 0..19, as UICCs)
    #[arg(long, value_name = "N", default_value_t = applet::DEFAULT_CHANNELS)]
    channels: usize,
    /// Key object layout: the public key shares the private key's id and label, or is an
    /// object of its own
    #[arg(long, value_enum, default_value = "combined")]
    layout: LayoutArg,
    /// Label of the device public key [default: the key label; "<key label>-PUB" with
    /// --layout separate]
    #[arg(long, value_name = "S")]
    pub_key_label: Option<String>,
    // -- end of the card model block.
    /// Another vendor's applet AID, selectable beside ours, that answers 6D00 to everything
    #[arg(long, value_name = "HEX")]
    foreign_aid: Option<String>,
    /// CLA of the applet commands on channel n: 00 -> 0n (4x on 4..19), 80 -> 8n (Cx)
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
        Some(link) => modem::run(&mut applet, opts, modem_quirks(&cli)?, link)
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

/// Default id of the public key object in the separate layout.
const SEPARATE_PUB_KEY_ID: &str = "03";

fn layout(cli: &Cli) -> Result<Layout, String> {
    let key_id = parse_id(&cli.key_id, "--key-id")?;
    let separate = cli.layout == LayoutArg::Separate;
    let pub_key_id = match (&cli.pub_key_id, separate) {
        (Some(s), _) => parse_id(s, "--pub-key-id")?,
        (None, true) => parse_id(SEPARATE_PUB_KEY_ID, "--pub-key-id")?,
        (None, false) => key_id.clone(),
    };
    let pub_key_label = match (&cli.pub_key_label, separate) {
        (Some(s), _) => s.clone(),
        (None, true) => format!("{}-PUB", cli.key_label),
        (None, false) => cli.key_label.clone(),
    };
    if separate && pub_key_id == key_id {
        return Err("--layout separate: the public key needs an id of its own".into());
    }
    Ok(Layout {
        key_id,
        pub_key_id,
        key_label: cli.key_label.clone().into_bytes(),
        pub_key_label: pub_key_label.into_bytes(),
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
            .map(|a| parse_aid(a))
            .collect::<Result<_, _>>()?;
    }
    if !(1..=MAX_CHANNELS).contains(&cli.channels) {
        return Err(format!(
            "--channels {}: a card has 1 to {MAX_CHANNELS} channels",
            cli.channels
        ));
    }
    cfg.channels = cli.channels;
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

/// An AID by name (gsma, thales, cira) or in hex.
fn parse_aid(text: &str) -> Result<Vec<u8>, String> {
    if let Some((_, aid)) = NAMED_AIDS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text))
    {
        return Ok(aid.to_vec());
    }
    let aid =
        hex::decode(text).map_err(|e| format!("--aid {text}: {e} (or gsma, thales, cira)"))?;
    if !(5..=16).contains(&aid.len()) {
        return Err(format!("--aid {text}: an AID is 5 to 16 bytes"));
    }
    Ok(aid)
}

fn modem_quirks(cli: &Cli) -> Result<modem::Quirks, String> {
    let log = cli.modem_log.as_ref().map(append_to).transpose()?;
    Ok(modem::Quirks {
        echo_stuck: cli.modem_echo,
        urcs: cli.modem_urcs,
        slow: Duration::from_millis(cli.modem_slow_ms),
        refuse_ccho: cli.modem_refuse_ccho.map(|how| match how {
            CchoRefusalArg::Absent => modem::CchoRefusal::Absent,
            CchoRefusalArg::NotAllowed => modem::CchoRefusal::NotAllowed,
        }),
        log,
    })
}

fn append_to(path: &PathBuf) -> Result<fs::File, String> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn vpcd_options(cli: &Cli) -> Result<vpcd::Options, String> {
    let atr = match &cli.atr {
        Some(a) => hex::decode(a).map_err(|e| format!("--atr: {e}"))?,
        None => vpcd::default_atr(cli.t0),
    };
    let trace = cli.trace.as_ref().map(append_to).transpose()?;
    Ok(vpcd::Options {
        addr: cli.vpcd.clone(),
        atr,
        latency: Duration::from_millis(cli.apdu_latency_ms),
        trace,
        fail_after: cli.fail_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::applet::{GSMA_AID, THALES_AID};

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("iotsafe-sim").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn aids_by_name_or_hex() {
        let cfg = config(&cli(&[
            "--aid",
            "thales",
            "--aid",
            "GSMA",
            "--aid",
            "A000000001",
        ]))
        .unwrap();
        assert_eq!(
            cfg.aids,
            [
                THALES_AID.to_vec(),
                GSMA_AID.to_vec(),
                vec![0xA0, 0, 0, 0, 1]
            ]
        );
        let e = config(&cli(&["--aid", "orange"])).unwrap_err();
        assert!(
            e.contains("--aid orange") && e.contains("gsma, thales"),
            "{e}"
        );
        let e = config(&cli(&["--aid", "A0000001"])).unwrap_err();
        assert!(e.contains("5 to 16 bytes"), "{e}");
    }

    #[test]
    fn channels_are_one_to_twenty() {
        assert_eq!(config(&cli(&["--channels", "20"])).unwrap().channels, 20);
        assert_eq!(config(&cli(&[])).unwrap().channels, 4);
        for bad in ["0", "21"] {
            let e = config(&cli(&["--channels", bad])).unwrap_err();
            assert!(e.contains("1 to 20 channels"), "{e}");
        }
    }

    #[test]
    fn separate_layout_gives_the_public_key_its_own_id_and_label() {
        let l = layout(&cli(&["--layout", "separate"])).unwrap();
        assert_eq!((l.key_id, l.pub_key_id), (vec![1], vec![3]));
        assert_eq!(l.pub_key_label, b"DEVICE-PUB");
        let l = layout(&cli(&["--layout", "separate", "--pub-key-id", "0A"])).unwrap();
        assert_eq!(l.pub_key_id, [0x0A]);
        let l = layout(&cli(&[])).unwrap();
        assert_eq!(
            (l.pub_key_id, l.pub_key_label),
            (vec![1], b"DEVICE".to_vec())
        );
        let e = layout(&cli(&["--layout", "separate", "--pub-key-id", "01"])).unwrap_err();
        assert!(e.contains("id of its own"), "{e}");
    }
}
