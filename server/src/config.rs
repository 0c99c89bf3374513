//! Server configuration: one struct, parsed from flags with `DEBRIEF_*` environment equivalents.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::sync::Arc;

use crate::documents::access::{Authorizer, ReviewsOnly, StaticTokens};
use crate::documents::peer::Credential;
use crate::limits::Limits;
use crate::reviews::identity::{Cidr, SignIn, TrustedHeaders};
use crate::reviews::oidc::OidcSettings;
use crate::reviews::trackers::Trackers;
use crate::reviews::webhooks::{Clock, WebhookSettings};
use crate::storage::integrity::OnDamage;
use crate::storage::postgres::PgSettings;
use crate::transport::stateless::{NoCommands, StatelessHandler};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Command-line configuration of the `debrief` binary.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "debrief",
    version,
    about = "Collaborative blameless post-mortems"
)]
pub struct Cli {
    /// Address to listen on. Port 0 picks a free port (the bound address is printed on stdout).
    #[arg(long, env = "DEBRIEF_LISTEN", default_value = "127.0.0.1:4000")]
    pub listen: SocketAddr,

    /// Directory of the embedded sled store; created when missing. With `--postgres`, it keeps
    /// only what stays on local disk (held anonymous items, the administration socket).
    #[arg(long, env = "DEBRIEF_DATA_DIR", default_value = "./debrief-data")]
    pub data_dir: PathBuf,

    /// Keep documents and metadata in PostgreSQL (15 or later) instead of sled: a libpq
    /// connection string, `postgres://user:password@host:5432/debrief` or
    /// `host=/run/postgresql dbname=debrief`. The tables are created when missing. A database
    /// that cannot be reached at start-up is retried for 30 s, then the server exits with
    /// status 1.
    #[arg(long, env = "DEBRIEF_POSTGRES_URL", hide_env_values = true)]
    pub postgres: Option<String>,

    /// How long start-up retries a PostgreSQL it cannot reach, in seconds (for tests).
    #[arg(long, env = "DEBRIEF_POSTGRES_PATIENCE_SECS", hide = true, default_value_t = crate::storage::postgres::DEFAULT_PATIENCE.as_secs())]
    pub postgres_patience_secs: u64,

    /// How long a commit or read on PostgreSQL may take before the connection is dropped as
    /// hung, in seconds (for tests).
    #[arg(long, env = "DEBRIEF_POSTGRES_TIMEOUT_SECS", hide = true, default_value_t = crate::storage::postgres::DEFAULT_TIMEOUT.as_secs())]
    pub postgres_timeout_secs: u64,

    /// With `--postgres`, the server is a node of a cluster (`docs/cluster.md`): how long its
    /// lease lasts after each renewal, in milliseconds (default 3000). A node that cannot renew
    /// within it stops writing; another node takes a dead node's documents once it lapsed.
    #[arg(long, env = "DEBRIEF_CLUSTER_LEASE_MS")]
    pub cluster_lease_ms: Option<u64>,

    /// With `--postgres`: how often the node renews its lease, in milliseconds (default 1000;
    /// less than the lease).
    #[arg(long, env = "DEBRIEF_CLUSTER_RENEW_MS")]
    pub cluster_renew_ms: Option<u64>,

    /// With `--postgres`: the `HOST:PORT` other nodes reach this node's internal link at,
    /// recorded in the database, where they look it up to forward to this node. Without it, the
    /// address `--cluster-listen` bound.
    #[arg(long, env = "DEBRIEF_CLUSTER_ADVERTISE")]
    pub cluster_advertise: Option<String>,

    /// With `--postgres`: the `IP:PORT` this node's internal link listens on, for other nodes
    /// of the cluster (port 0 picks a free port). Needs the cluster secret
    /// (`--cluster-secret-file` or `DEBRIEF_CLUSTER_SECRET`). Without `--cluster-advertise`, the
    /// node advertises the address it bound, which must then not be 0.0.0.0 or ::. Without this
    /// flag the node has no link.
    #[arg(long, env = "DEBRIEF_CLUSTER_LISTEN")]
    pub cluster_listen: Option<String>,

    /// With `--postgres`: a file holding the cluster secret every node is given (at least 32
    /// random bytes as hex or base64, such as `openssl rand -hex 32` prints), readable by its
    /// owner only. Without it, the secret is read from `DEBRIEF_CLUSTER_SECRET`.
    #[arg(long, env = "DEBRIEF_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,

    /// Log output format; the level is set with RUST_LOG (default `info`).
    #[arg(long, env = "DEBRIEF_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Open access to documents outside reviews: any token (or none) may read and write them,
    /// except the read-only token. For local experiments and compatibility tests with stock
    /// clients; review documents always follow their review's rules. Off by default.
    #[arg(long, env = "DEBRIEF_OPEN_ACCESS")]
    pub open_access: bool,

    /// A shared token that gives read-write access to every document outside reviews.
    #[arg(long, env = "DEBRIEF_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// A shared token that gives read-only access to every document outside reviews.
    #[arg(long, env = "DEBRIEF_READ_ONLY_TOKEN", hide_env_values = true)]
    pub read_only_token: Option<String>,

    /// When set, creating a review needs this secret (`Authorization: Bearer <secret>`);
    /// otherwise anyone who reaches the server can create one.
    #[arg(long, env = "DEBRIEF_CREATION_SECRET", hide_env_values = true)]
    pub creation_secret: Option<String>,

    /// Threads that serve sockets and documents (compaction and document loading have threads
    /// of their own). By default one fewer than the machine's cores, at least one: one on a
    /// 2-core machine, where a second cost 20–30 % more CPU per delivered update and one served
    /// 6,000 updates/s; more where the cores are there for a busy server (see the README's
    /// "Threads").
    #[arg(long, env = "DEBRIEF_WORKERS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: Option<u16>,

    /// Seconds between releases of held anonymous items (their timestamps are rounded to it).
    #[arg(long, env = "DEBRIEF_ANONYMOUS_CADENCE_SECS", default_value_t = crate::limits::DEFAULT_ANONYMOUS_CADENCE.as_secs(), value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub anonymous_cadence_secs: u64,

    /// The contributing factors offered for tagging reviews, comma-separated (each 1 to 40
    /// characters: letters, digits, spaces and - / & ' . ( ); stored in lower case). People may
    /// add their own tags beside them. Default: alerting gap, change management, capacity,
    /// dependency failure, runbook gap, testing gap, config drift, knowledge silo, unclear
    /// ownership, automation gap.
    #[arg(long, env = "DEBRIEF_FACTOR_TAGS", value_delimiter = ',')]
    pub factor_tags: Vec<String>,

    /// What to do when the data directory is damaged: `refuse` (print what is damaged and exit
    /// with status 1) or `read-only` (serve what can be read, refuse every change, and say so on
    /// /readyz). Either way the damaged files are first copied to `<data-dir>/damaged/<time>/`.
    #[arg(long, env = "DEBRIEF_ON_DAMAGE", value_enum, default_value_t = OnDamage::Refuse)]
    pub on_damage: OnDamage,

    /// Turns text matching a pattern into a tracker link, written `REGEX=URL` with `{}` in the
    /// URL where the matched text goes (`PROJ-[0-9]+=https://tracker.example/browse/{}`): in an
    /// action item's text, and as its link (the key alone is stored as the URL). Repeat the flag
    /// or separate patterns with commas (a comma ends a pattern only after its URL has begun).
    #[arg(long = "tracker-pattern", env = "DEBRIEF_TRACKER_PATTERN", action = clap::ArgAction::Append)]
    pub tracker_patterns: Vec<String>,

    /// Lets webhooks target this machine or a private network (loopback, private, link-local and
    /// other non-public addresses, and `localhost`). Off by default: whoever may add a webhook
    /// could otherwise make the server reach services only it can reach. Turn it on when the
    /// receivers are on the same network (a chat server inside the company).
    #[arg(long, env = "DEBRIEF_WEBHOOKS_ALLOW_PRIVATE")]
    pub webhooks_allow_private: bool,

    /// Behind an authenticating proxy (oauth2-proxy, Pomerium, Cloudflare Access): the request
    /// header that names the signed-in person by a stable id (`X-Forwarded-User`,
    /// `X-Auth-Request-User`, …). Honoured only on connections from a `--trusted-proxy` range;
    /// from anywhere else it is ignored. Turns sign-in on: creating a review then needs a person.
    #[arg(long, env = "DEBRIEF_TRUSTED_IDENTITY_HEADER")]
    pub trusted_identity_header: Option<String>,

    /// The proxy's header with the person's display name (`X-Forwarded-Preferred-Username`);
    /// without it, the e-mail address or the id is shown. Like every identity header, set it
    /// only if the proxy overwrites it on every request.
    #[arg(long, env = "DEBRIEF_TRUSTED_NAME_HEADER")]
    pub trusted_name_header: Option<String>,

    /// The proxy's header with the person's e-mail address (`X-Forwarded-Email`).
    #[arg(long, env = "DEBRIEF_TRUSTED_EMAIL_HEADER")]
    pub trusted_email_header: Option<String>,

    /// The proxy's header with the person's groups, comma-separated (`X-Forwarded-Groups`).
    #[arg(long, env = "DEBRIEF_TRUSTED_GROUPS_HEADER")]
    pub trusted_groups_header: Option<String>,

    /// An address range (`10.0.0.0/8`, `::1/128`, or one address) of the authenticating proxy:
    /// its identity headers, and `X-Forwarded-For` for the client's address (which the limits on
    /// guessing count by), are honoured only on connections from these ranges. An IPv4 range
    /// written as IPv6 (`::ffff:10.0.0.0/104`) needs a prefix length of at least 96. Repeat the
    /// flag or separate ranges with commas.
    #[arg(long = "trusted-proxy", env = "DEBRIEF_TRUSTED_PROXY", value_delimiter = ',', action = clap::ArgAction::Append)]
    pub trusted_proxies: Vec<String>,

    /// With sign-in: creating a review needs an e-mail address in this domain (repeat the flag
    /// or separate domains with commas for several).
    #[arg(long = "allowed-email-domain", env = "DEBRIEF_ALLOWED_EMAIL_DOMAIN", value_delimiter = ',', action = clap::ArgAction::Append)]
    pub allowed_email_domains: Vec<String>,

    /// With sign-in: creating a review needs membership of this group (from the proxy's groups
    /// header, or the provider's `groups` claim).
    #[arg(long, env = "DEBRIEF_REQUIRED_GROUP")]
    pub required_group: Option<String>,

    /// OpenID Connect sign-in: the provider's issuer URL (discovery reads
    /// `/.well-known/openid-configuration` under it at start-up). Needs `--oidc-client-id` and
    /// `--public-url`. Turns sign-in on: creating a review then needs a person.
    #[arg(long, env = "DEBRIEF_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,

    /// The client id registered at the OpenID provider.
    #[arg(long, env = "DEBRIEF_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,

    /// The client secret registered at the OpenID provider (none for a public client).
    #[arg(long, env = "DEBRIEF_OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<String>,

    /// The server's address as browsers reach it (`https://debrief.example.com`): the redirect
    /// URL to register at the provider is this with `/auth/callback`, and `https` makes the
    /// sign-in cookie `Secure`.
    #[arg(long, env = "DEBRIEF_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// For tests only: allows an `http` issuer on this machine (a loopback address or
    /// `localhost`); refused for any other host.
    #[arg(long, env = "DEBRIEF_OIDC_ALLOW_INSECURE_HTTP")]
    pub oidc_allow_insecure_http: bool,

    /// Offline and administrative commands; without one, the server runs.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The contributing factors a server offers unless it is started with `--factor-tags`: the
/// causes that keep coming back in post-mortem practice.
pub const DEFAULT_FACTOR_TAGS: [&str; 10] = [
    "alerting gap",
    "change management",
    "capacity",
    "dependency failure",
    "runbook gap",
    "testing gap",
    "config drift",
    "knowledge silo",
    "unclear ownership",
    "automation gap",
];

/// `debrief check | backup | restore`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Verifies a data directory while no server runs on it: prints `ok`, or one `damaged: …`
    /// line per damaged thing. Exit status 0 when healthy, 1 when damaged, 2 when it cannot
    /// be checked.
    Check {
        /// The data directory to check.
        #[arg(long, env = "DEBRIEF_DATA_DIR", default_value = "./debrief-data")]
        data_dir: PathBuf,
    },
    /// Writes a consistent backup of a data directory into a new folder: through the running
    /// server's administration socket (`<data-dir>/admin.sock`) while it runs, or directly when
    /// no server runs on it.
    Backup {
        /// The data directory to back up.
        #[arg(long, env = "DEBRIEF_DATA_DIR", default_value = "./debrief-data")]
        data_dir: PathBuf,
        /// The folder to write the backup into (must not exist, or be empty).
        #[arg(long)]
        to: PathBuf,
    },
    /// Checks a backup and writes it into a new data directory.
    Restore {
        /// The backup folder.
        #[arg(long)]
        from: PathBuf,
        /// The new data directory (must not exist, or be empty).
        #[arg(long, env = "DEBRIEF_DATA_DIR")]
        data_dir: PathBuf,
    },
}

impl Cli {
    /// The cluster flags, checked: they need `--postgres`, and the advertised address must be
    /// `HOST:PORT`. The lease settings themselves are checked by the cluster
    /// (`debrief_server::cluster_settings`).
    pub fn cluster(&self) -> Result<ClusterOptions, String> {
        let postgres = self
            .postgres
            .as_deref()
            .is_some_and(|u| !u.trim().is_empty());
        let given = self.cluster_lease_ms.is_some()
            || self.cluster_renew_ms.is_some()
            || self.cluster_advertise.is_some();
        if given && !postgres {
            return Err(
                "--cluster-lease-ms, --cluster-renew-ms and --cluster-advertise need --postgres"
                    .to_owned(),
            );
        }
        if (self.cluster_listen.is_some() || self.cluster_secret_file.is_some()) && !postgres {
            return Err("--cluster-listen and --cluster-secret-file need --postgres".to_owned());
        }
        let listen = match &self.cluster_listen {
            Some(address) => Some(address.trim().parse::<SocketAddr>().map_err(|_| {
                format!(
                    "--cluster-listen: {address:?} is not IP:PORT (an IP address, a colon and a \
                     port; port 0 picks a free one)"
                )
            })?),
            None => None,
        };
        if let Some(listen) = listen {
            // The variable the cluster reads the secret from (`cluster::link::SECRET_ENV`;
            // this room may not name the cluster's).
            let from_env =
                std::env::var_os("DEBRIEF_CLUSTER_SECRET").is_some_and(|v| !v.is_empty());
            if self.cluster_secret_file.is_none() && !from_env {
                return Err(
                    "--cluster-listen needs the cluster secret: give --cluster-secret-file or set \
                     DEBRIEF_CLUSTER_SECRET"
                        .to_owned(),
                );
            }
            if self.cluster_advertise.is_none() && listen.ip().is_unspecified() {
                return Err(unspecified_listen(listen));
            }
        }
        let advertise = match &self.cluster_advertise {
            Some(address) => {
                let valid = address.rsplit_once(':').is_some_and(|(host, port)| {
                    !host.is_empty()
                        && !host.chars().any(char::is_whitespace)
                        && port.parse::<u16>().is_ok_and(|p| p != 0)
                });
                if !valid {
                    return Err(format!(
                        "--cluster-advertise: {address:?} is not HOST:PORT (a host name or \
                         address, a colon and a port from 1 to 65535)"
                    ));
                }
                address.clone()
            }
            None => String::new(),
        };
        Ok(ClusterOptions {
            lease: self.cluster_lease_ms.map(std::time::Duration::from_millis),
            renew_every: self.cluster_renew_ms.map(std::time::Duration::from_millis),
            advertise,
            listen,
            secret_file: self.cluster_secret_file.clone(),
        })
    }

    /// The worker threads to start: as configured, or one fewer than the cores the process may
    /// use (at least one).
    pub fn workers(&self) -> usize {
        match self.workers {
            Some(n) => usize::from(n),
            None => std::thread::available_parallelism()
                .map_or(1, |n| n.get().saturating_sub(1))
                .clamp(1, 256),
        }
    }

    /// The tracker patterns, checked: the error names the first bad one.
    pub fn trackers(&self) -> Result<Trackers, String> {
        Trackers::parse(&self.tracker_patterns)
    }

    /// The OpenID Connect settings, checked, when an issuer is given.
    pub fn oidc(&self) -> Result<Option<OidcSettings>, String> {
        let given = |s: &Option<String>| {
            s.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let Some(issuer) = given(&self.oidc_issuer) else {
            if self.oidc_client_id.is_some() || self.oidc_client_secret.is_some() {
                return Err("--oidc-client-id and --oidc-client-secret need --oidc-issuer".into());
            }
            return Ok(None);
        };
        let client_id =
            given(&self.oidc_client_id).ok_or("--oidc-issuer needs --oidc-client-id")?;
        let public_url = given(&self.public_url).ok_or(
            "--oidc-issuer needs --public-url (the server's address as browsers reach it)",
        )?;
        let settings = OidcSettings {
            issuer,
            client_id,
            client_secret: given(&self.oidc_client_secret),
            public_url,
            allow_insecure_http: self.oidc_allow_insecure_http,
            idle: crate::reviews::oidc::DEFAULT_IDLE,
            absolute: crate::reviews::oidc::DEFAULT_ABSOLUTE,
        };
        settings.check()?;
        Ok(Some(settings))
    }

    /// How people sign in, checked: the error names the first bad flag.
    pub fn sign_in(&self) -> Result<SignIn, String> {
        let header = |flag: &str, name: &Option<String>| -> Result<Option<String>, String> {
            match name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
                None => Ok(None),
                Some(n) => axum::http::HeaderName::from_bytes(n.as_bytes())
                    .map(|h| Some(h.as_str().to_owned()))
                    .map_err(|_| format!("--{flag}: {n:?} is not a header name")),
            }
        };
        let identity = header("trusted-identity-header", &self.trusted_identity_header)?;
        let name = header("trusted-name-header", &self.trusted_name_header)?;
        let email = header("trusted-email-header", &self.trusted_email_header)?;
        let groups = header("trusted-groups-header", &self.trusted_groups_header)?;
        if identity.is_none() && (name.is_some() || email.is_some() || groups.is_some()) {
            return Err(
                "--trusted-name-header, --trusted-email-header and --trusted-groups-header need \
                 --trusted-identity-header"
                    .to_owned(),
            );
        }
        let proxies = self
            .trusted_proxies
            .iter()
            .filter(|p| !p.trim().is_empty())
            .map(|p| Cidr::parse(p).map_err(|e| format!("--trusted-proxy: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SignIn {
            trusted: identity.map(|identity| TrustedHeaders {
                identity,
                name,
                email,
                groups,
            }),
            proxies,
            allowed_email_domains: self
                .allowed_email_domains
                .iter()
                .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
                .filter(|d| !d.is_empty())
                .collect(),
            required_group: self
                .required_group
                .as_deref()
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_owned),
            oidc: self.oidc()?.is_some(),
        })
    }

    /// Whether documents outside reviews are served at all (open access or a shared token).
    pub fn serves_other_documents(&self) -> bool {
        self.open_access
            || [&self.token, &self.read_only_token]
                .iter()
                .any(|t| t.as_deref().is_some_and(|t| !t.is_empty()))
    }
}

/// What [`crate::run`] needs, independent of how it was obtained (flags, or a test).
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory of the sled store.
    pub data_dir: PathBuf,
    /// The bounds in force.
    pub limits: Limits,
    /// Who may open which document outside reviews (review documents are decided by the
    /// review domain).
    pub authorizer: Arc<dyn Authorizer>,
    /// What answers stateless messages.
    pub stateless: Arc<dyn StatelessHandler>,
    /// Secret needed to create a review, if any.
    pub creation_secret: Option<Credential>,
    /// Time between releases of held anonymous items.
    pub anonymous_cadence: std::time::Duration,
    /// What to do when the data directory is damaged.
    pub on_damage: OnDamage,
    /// Patterns that turn issue keys into tracker links (none by default).
    pub trackers: Arc<Trackers>,
    /// How webhook deliveries are retried and bounded.
    pub webhooks: WebhookSettings,
    /// The clock of webhook events and of action items' due days (tests move a manual one).
    pub clock: Clock,
    /// The contributing factors offered for tagging (normalised as the review domain normalises
    /// a factor; one it refuses is left out: the binary refuses to start with it).
    pub factor_tags: Vec<String>,
    /// How people sign in, and what it allows (off by default: everyone is anonymous to the
    /// server until they join with a name).
    pub sign_in: SignIn,
    /// OpenID Connect sign-in, when set up (`sign_in.oidc` must say so too).
    pub oidc: Option<OidcSettings>,
    /// Documents and metadata in PostgreSQL instead of sled, when set.
    pub postgres: Option<PgSettings>,
    /// With `postgres`, the node's lease and advertised address.
    pub cluster: ClusterOptions,
}

/// How a server with `--postgres` runs as a cluster node; `None` takes the cluster's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterOptions {
    /// How long the lease lasts after each renewal.
    pub lease: Option<std::time::Duration>,
    /// How often it is renewed.
    pub renew_every: Option<std::time::Duration>,
    /// Where other nodes reach this node's internal link (`HOST:PORT`), or empty: then the
    /// listener's bound address when there is a listener.
    pub advertise: String,
    /// The address the link listener binds; `None`: the node has no link.
    pub listen: Option<SocketAddr>,
    /// The file the cluster secret is read from; `None`: `DEBRIEF_CLUSTER_SECRET`.
    pub secret_file: Option<PathBuf>,
}

impl ClusterOptions {
    /// The address to register for a link listener bound at `bound`: `advertise` when given,
    /// else the bound address (with the real port when port 0 was asked), which other nodes can
    /// dial only if it names one interface.
    pub fn advertised(&self, bound: SocketAddr) -> Result<String, String> {
        if !self.advertise.is_empty() {
            return Ok(self.advertise.clone());
        }
        if bound.ip().is_unspecified() {
            return Err(unspecified_listen(bound));
        }
        Ok(bound.to_string())
    }
}

/// Why a listener on every interface needs `--cluster-advertise`.
fn unspecified_listen(listen: SocketAddr) -> String {
    format!(
        "--cluster-listen {listen} listens on every interface, an address other nodes cannot dial: \
         give --cluster-advertise HOST:PORT, where they reach this node"
    )
}

impl Config {
    /// A configuration with default limits and open access to documents outside reviews, for
    /// the given data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            limits: Limits::default(),
            authorizer: Arc::new(StaticTokens::open()),
            stateless: Arc::new(NoCommands),
            creation_secret: None,
            anonymous_cadence: crate::limits::DEFAULT_ANONYMOUS_CADENCE,
            on_damage: OnDamage::Refuse,
            trackers: Arc::new(Trackers::default()),
            webhooks: WebhookSettings::default(),
            clock: Clock::system(),
            factor_tags: DEFAULT_FACTOR_TAGS.map(String::from).to_vec(),
            sign_in: SignIn::default(),
            oidc: None,
            postgres: None,
            cluster: ClusterOptions::default(),
        }
    }
}

impl From<&Cli> for Config {
    fn from(cli: &Cli) -> Self {
        let authorizer: Arc<dyn Authorizer> = if cli.serves_other_documents() {
            Arc::new(StaticTokens::new(
                cli.open_access,
                cli.token.clone(),
                cli.read_only_token.clone(),
            ))
        } else {
            Arc::new(ReviewsOnly)
        };
        Config {
            authorizer,
            creation_secret: cli
                .creation_secret
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(Credential::new),
            anonymous_cadence: std::time::Duration::from_secs(cli.anonymous_cadence_secs),
            on_damage: cli.on_damage,
            // Checked before the server starts (`main`): a bad pattern stops it with its reason.
            trackers: Arc::new(cli.trackers().unwrap_or_default()),
            // Checked before the server starts, like the tracker patterns.
            sign_in: cli.sign_in().unwrap_or_default(),
            oidc: cli.oidc().ok().flatten(),
            factor_tags: if cli.factor_tags.is_empty() {
                Config::new(&cli.data_dir).factor_tags
            } else {
                cli.factor_tags.clone()
            },
            webhooks: WebhookSettings {
                allow_private: cli.webhooks_allow_private,
                ..WebhookSettings::default()
            },
            postgres: cli
                .postgres
                .clone()
                .filter(|u| !u.trim().is_empty())
                .map(|url| PgSettings {
                    // Decided by the server from the cluster options.
                    shared: false,
                    url,
                    patience: std::time::Duration::from_secs(cli.postgres_patience_secs),
                    timeout: std::time::Duration::from_secs(cli.postgres_timeout_secs.max(1)),
                }),
            // Checked before the server starts, like the tracker patterns.
            cluster: cli.cluster().unwrap_or_default(),
            ..Config::new(cli.data_dir.clone())
        }
    }
}
