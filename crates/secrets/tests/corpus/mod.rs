//! A labelled corpus for measuring secret detection: real-format fake
//! credentials for each provider planted in source files of several languages,
//! next to decoys that must not be reported (UUIDs, hashes, base64 blobs,
//! documentation example keys, placeholders and references).
//!
//! Written for hangar; deterministic for a seed, so a failing accuracy test
//! reproduces. Shared by `tests/accuracy.rs` and `examples/gen_corpus.rs`
//! (which writes it to disk for the side-by-side benchmark).

#![allow(dead_code)]

/// splitmix64: tiny, seedable, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    /// `min` to `min + extra - 1` characters.
    pub fn chars_n(&mut self, alphabet: &[u8], min: usize, extra: usize) -> String {
        let n = min + self.below(extra);
        self.chars(alphabet, n)
    }
    pub fn chars(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| alphabet[self.below(alphabet.len())] as char)
            .collect()
    }
}

const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const HEX: &[u8] = b"0123456789abcdef";
const DIGITS: &[u8] = b"0123456789";

/// A labelled line.
#[derive(Debug, Clone)]
pub struct Label {
    pub path: String,
    pub line: u32,
    pub kind: String,
}

pub struct Corpus {
    pub files: Vec<(String, String)>,
    pub secrets: Vec<Label>,
    pub decoys: Vec<Label>,
}

/// A value to plant: what it is, a snake_case name for the variable, the
/// value, and whether it spans lines (private keys).
struct Plant {
    kind: &'static str,
    name: &'static str,
    value: String,
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn base62(mut n: u32, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = ALNUM_BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out).unwrap()
}
const ALNUM_BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn b64url_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(B64URL[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn github_token(rng: &mut Rng, prefix: &str) -> String {
    // The last six characters are the base62 CRC32 of the first thirty, as GitHub issues them.
    let body = rng.chars(ALNUM, 30);
    format!("{prefix}{body}{}", base62(crc32(body.as_bytes()), 6))
}

fn pem_body(rng: &mut Rng, lines: usize) -> Vec<String> {
    (0..lines).map(|_| rng.chars(B64, 64)).collect()
}

fn secret(rng: &mut Rng) -> Plant {
    let p = |kind, name, value| Plant { kind, name, value };
    match rng.below(24) {
        0 => p(
            "aws-access-key-id",
            "aws_access_key_id",
            format!("AKIA{}", rng.chars(BASE32, 16)),
        ),
        1 => p(
            "aws-secret-access-key",
            "aws_secret_access_key",
            rng.chars(B64, 40),
        ),
        2 => p("github-pat", "github_token", github_token(rng, "ghp_")),
        3 => p(
            "github-fine-grained-pat",
            "gh_pat",
            format!(
                "github_pat_{}_{}",
                rng.chars(ALNUM, 22),
                rng.chars(ALNUM, 59)
            ),
        ),
        4 => p(
            "gitlab-token",
            "gitlab_token",
            format!("glpat-{}", rng.chars(B64URL, 20)),
        ),
        5 => p(
            "slack-bot-token",
            "slack_bot_token",
            format!(
                "xoxb-{}-{}-{}",
                rng.chars(DIGITS, 11),
                rng.chars(DIGITS, 13),
                rng.chars(ALNUM, 24)
            ),
        ),
        6 => p(
            "slack-webhook-url",
            "slack_webhook",
            format!(
                "https://hooks.slack.com/services/T{}/B{}/{}",
                rng.chars(UPPER_ALNUM, 8),
                rng.chars(UPPER_ALNUM, 10),
                rng.chars(ALNUM, 24)
            ),
        ),
        7 => p(
            "stripe-secret-key",
            "stripe_key",
            format!("sk_live_{}", rng.chars_n(ALNUM, 24, 76)),
        ),
        8 => p(
            "twilio-api-key",
            "twilio_api_key",
            format!("SK{}", rng.chars(HEX, 32)),
        ),
        9 => p(
            "sendgrid-api-key",
            "sendgrid_api_key",
            format!("SG.{}.{}", rng.chars(B64URL, 22), rng.chars(B64URL, 43)),
        ),
        10 => p(
            "npm-access-token",
            "npm_token",
            format!("npm_{}", rng.chars(ALNUM, 36)),
        ),
        11 => p(
            "pypi-token",
            "pypi_token",
            format!("pypi-AgEIcHlwaS5vcmc{}", rng.chars_n(B64URL, 70, 100)),
        ),
        12 => p(
            "gcp-api-key",
            "google_api_key",
            format!("AIza{}", rng.chars(B64URL, 35)),
        ),
        13 => p(
            "azure-storage-account-key",
            "storage_connection_string",
            format!(
                "DefaultEndpointsProtocol=https;AccountName={};AccountKey={}==;EndpointSuffix=core.windows.net",
                rng.chars(b"abcdefghijklmnopqrstuvwxyz", 10),
                rng.chars(B64, 86)
            ),
        ),
        14 => p(
            "azure-ad-client-secret",
            "azure_client_secret",
            format!(
                "{}{}Q~{}",
                rng.chars(ALNUM, 3),
                rng.chars(DIGITS, 1),
                rng.chars(ALNUM, 34)
            ),
        ),
        15 => p("private-key", "private_key", String::new()),
        16 => {
            let payload = format!(
                "{{\"sub\":\"{}\",\"name\":\"user{}\",\"iat\":{}}}",
                rng.chars(DIGITS, 10),
                rng.below(10_000),
                1_600_000_000 + rng.below(100_000_000)
            );
            p(
                "jwt",
                "session_jwt",
                format!(
                    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{}.{}",
                    b64url_encode(payload.as_bytes()),
                    rng.chars(B64URL, 43)
                ),
            )
        }
        17 => p(
            "database-url-password",
            "database_url",
            format!(
                "{}://{}:{}@{}.internal:{}/{}",
                rng.pick(&["postgres", "postgresql", "mysql", "mongodb", "redis"]),
                rng.pick(&["app", "svc_orders", "billing", "admin_ro"]),
                rng.chars_n(ALNUM, 12, 12),
                rng.pick(&["db", "pg-primary", "cache", "mongo-0"]),
                rng.pick(&["5432", "3306", "27017", "6379"]),
                rng.pick(&["app", "orders", "0"])
            ),
        ),
        18 => p(
            "generic-secret",
            rng.pick(&[
                "client_secret",
                "api_secret",
                "signing_secret",
                "auth_token",
                "access_token",
                "api_key",
            ]),
            format!("{}{}", rng.chars_n(ALNUM, 20, 20), rng.chars(DIGITS, 2)),
        ),
        19 => p("gcp-service-account", "gcp_credentials", String::new()),
        20 => p(
            "mailgun-api-key",
            "mailgun_api_key",
            format!("key-{}", rng.chars(HEX, 32)),
        ),
        21 => p(
            "openai-api-key",
            "openai_api_key",
            format!(
                "sk-proj-{}T3BlbkFJ{}",
                rng.chars(B64URL, 40),
                rng.chars(B64URL, 40)
            ),
        ),
        22 => p(
            "docker-hub-token",
            "dockerhub_token",
            format!("dckr_pat_{}", rng.chars(B64URL, 27)),
        ),
        _ => p(
            "shopify-token",
            "shopify_access_token",
            format!("shpat_{}", rng.chars(HEX, 32)),
        ),
    }
}

/// Values that look like secrets to a naive scanner and are not.
fn decoy(rng: &mut Rng) -> Plant {
    let p = |kind, name, value| Plant { kind, name, value };
    let uuid = |rng: &mut Rng| {
        format!(
            "{}-{}-{}-{}-{}",
            rng.chars(HEX, 8),
            rng.chars(HEX, 4),
            rng.chars(HEX, 4),
            rng.chars(HEX, 4),
            rng.chars(HEX, 12)
        )
    };
    match rng.below(24) {
        18 => p(
            "pinned-action",
            "uses",
            format!("actions/checkout@{}", rng.chars(HEX, 40)),
        ),
        19 => p(
            "image-digest",
            "image",
            format!("nginx@sha256:{}", rng.chars(HEX, 64)),
        ),
        20 => p("placeholder", "authorization", "Bearer ${API_TOKEN}".into()),
        21 => p(
            "public-key",
            "ssh_public_key",
            format!(
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{} deploy@ci",
                rng.chars(B64, 43)
            ),
        ),
        22 => p("uuid", "correlation_id", uuid(rng)),
        23 => p("reference", "api_key", "settings.PAYMENTS_API_KEY".into()),
        0 => p("uuid", "request_id", uuid(rng)),
        1 => p("uuid", "tenant_id", uuid(rng)),
        2 => p("sha1", "commit_sha", rng.chars(HEX, 40)),
        3 => p("sha256", "checksum", rng.chars(HEX, 64)),
        4 => p(
            "base64-blob",
            "logo_png",
            format!("data:image/png;base64,{}", rng.chars(B64, 120)),
        ),
        5 => p(
            "aws-example",
            "aws_access_key_id",
            "AKIAIOSFODNN7EXAMPLE".into(),
        ),
        6 => p(
            "aws-example",
            "aws_secret_access_key",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        ),
        7 => p("placeholder", "db_password", "${DB_PASSWORD}".into()),
        8 => p("placeholder", "api_key", "<your-api-key>".into()),
        9 => p(
            "placeholder",
            "github_token",
            "${{ secrets.GITHUB_TOKEN }}".into(),
        ),
        10 => p(
            "placeholder",
            "database_url",
            "postgres://app:${PGPASSWORD}@localhost:5432/app".into(),
        ),
        11 => p(
            "placeholder",
            "stripe_key",
            "sk_live_XXXXXXXXXXXXXXXXXXXXXXXX".into(),
        ),
        12 => p(
            "publishable-key",
            "stripe_publishable_key",
            format!("pk_live_{}", rng.chars(ALNUM, 24)),
        ),
        13 => p(
            "sri-hash",
            "integrity",
            format!("sha512-{}==", rng.chars(B64, 86)),
        ),
        14 => p("reference", "secret_name", "prod/payments/api-key".into()),
        15 => p(
            "reference",
            "password_file",
            "/run/secrets/db_password".into(),
        ),
        16 => p(
            "twilio-sid",
            "twilio_account_sid",
            format!("AC{}", rng.chars(HEX, 32)),
        ),
        _ => p("placeholder", "auth_token", "changeme".into()),
    }
}

#[derive(Clone, Copy)]
enum Lang {
    Python,
    JavaScript,
    Go,
    Rust,
    Java,
    Ruby,
    Yaml,
    Json,
    Env,
    Shell,
    Terraform,
    Properties,
}

const LANGS: [(Lang, &str); 12] = [
    (Lang::Python, "py"),
    (Lang::JavaScript, "js"),
    (Lang::Go, "go"),
    (Lang::Rust, "rs"),
    (Lang::Java, "java"),
    (Lang::Ruby, "rb"),
    (Lang::Yaml, "yaml"),
    (Lang::Json, "json"),
    (Lang::Env, "env"),
    (Lang::Shell, "sh"),
    (Lang::Terraform, "tf"),
    (Lang::Properties, "properties"),
];

fn camel(snake: &str) -> String {
    let mut out = String::new();
    for (i, w) in snake.split('_').enumerate() {
        if i == 0 {
            out.push_str(w);
        } else {
            let mut c = w.chars();
            if let Some(f) = c.next() {
                out.push(f.to_ascii_uppercase());
                out.push_str(c.as_str());
            }
        }
    }
    out
}

/// One assignment of `value` to `name` in the language's idiom.
fn assign(lang: Lang, name: &str, value: &str) -> String {
    let upper = name.to_ascii_uppercase();
    match lang {
        Lang::Python => format!("{upper} = \"{value}\""),
        Lang::JavaScript => format!("const {} = \"{value}\";", camel(name)),
        Lang::Go => format!("\t{} := \"{value}\"", camel(name)),
        Lang::Rust => format!("const {upper}: &str = \"{value}\";"),
        Lang::Java => format!("    private static final String {upper} = \"{value}\";"),
        Lang::Ruby => format!("{upper} = '{value}'"),
        Lang::Yaml => format!("  {name}: \"{value}\""),
        Lang::Json => format!("  \"{}\": \"{value}\",", camel(name)),
        Lang::Env => format!("{upper}={value}"),
        Lang::Shell => format!("export {upper}=\"{value}\""),
        Lang::Terraform => format!("  {name} = \"{value}\""),
        Lang::Properties => format!("{}={value}", name.replace('_', ".")),
    }
}

/// The same value where secrets also turn up: an HTTP header in a script, a
/// compose file's environment list, a comment, a CLI flag.
fn elsewhere(rng: &mut Rng, lang: Lang, plant: &Plant) -> String {
    let upper = plant.name.to_ascii_uppercase();
    let comment = match lang {
        Lang::Python
        | Lang::Ruby
        | Lang::Yaml
        | Lang::Env
        | Lang::Shell
        | Lang::Terraform
        | Lang::Properties => "#",
        Lang::Json => return assign(lang, plant.name, &plant.value),
        _ => "//",
    };
    match rng.below(4) {
        0 if plant.kind != "generic-secret" => format!("{comment} old value: {}", plant.value),
        0 | 1 => format!(
            "{comment} curl -H \"Authorization: Bearer {}\" https://api.internal/v1/orders",
            plant.value
        ),
        2 => format!("      - {upper}={}", plant.value),
        _ => format!(
            "{comment} deploy --{}={}",
            plant.name.replace('_', "-"),
            plant.value
        ),
    }
}

/// A multi-line PEM key in the language's idiom; returns the lines and the
/// index of the BEGIN line within them.
fn private_key(rng: &mut Rng, lang: Lang) -> (Vec<String>, usize) {
    let label = rng.pick(&[
        "RSA PRIVATE KEY",
        "PRIVATE KEY",
        "EC PRIVATE KEY",
        "OPENSSH PRIVATE KEY",
    ]);
    let mut body = vec![format!("-----BEGIN {label}-----")];
    let n = 6 + rng.below(20);
    body.extend(pem_body(rng, n));
    body.push(format!("-----END {label}-----"));
    match lang {
        Lang::Python => {
            let mut l = vec!["PRIVATE_KEY = \"\"\"".to_string() + &body[0]];
            l.extend(body[1..].iter().cloned());
            l.push("\"\"\"".into());
            (l, 0)
        }
        Lang::JavaScript => {
            let mut l = vec!["const privateKey = `".to_string() + &body[0]];
            l.extend(body[1..].iter().cloned());
            l.push("`;".into());
            (l, 0)
        }
        Lang::Yaml => {
            let mut l = vec!["  private_key: |".to_string()];
            l.extend(body.iter().map(|b| format!("    {b}")));
            (l, 1)
        }
        _ => (body, 0),
    }
}

fn service_account(rng: &mut Rng) -> (Vec<String>, usize) {
    let key: String = pem_body(rng, 16).join("\\n");
    let lines = vec![
        "{".to_string(),
        "  \"type\": \"service_account\",".into(),
        format!("  \"project_id\": \"proj-{}\",", rng.chars(HEX, 6)),
        format!("  \"private_key_id\": \"{}\",", rng.chars(HEX, 40)),
        format!(
            "  \"private_key\": \"-----BEGIN PRIVATE KEY-----\\n{key}\\n-----END PRIVATE KEY-----\\n\","
        ),
        format!(
            "  \"client_email\": \"deploy@proj-{}.iam.gserviceaccount.com\",",
            rng.chars(HEX, 6)
        ),
        "  \"token_uri\": \"https://oauth2.googleapis.com/token\"".into(),
        "}".into(),
    ];
    (lines, 4)
}

/// Ordinary lines of code, with the words scanners key on used innocently.
fn filler(rng: &mut Rng, lang: Lang) -> String {
    let comment = match lang {
        Lang::Python
        | Lang::Ruby
        | Lang::Yaml
        | Lang::Env
        | Lang::Shell
        | Lang::Terraform
        | Lang::Properties => "#",
        Lang::Json => "",
        _ => "//",
    };
    let n = rng.below(14);
    if matches!(lang, Lang::Json) {
        return match n {
            0..=4 => format!(
                "  \"{}\": {},",
                rng.pick(&["timeout", "retries", "port", "workers"]),
                rng.below(1000)
            ),
            5..=8 => format!(
                "  \"{}\": \"{}\",",
                rng.pick(&["name", "region", "tokenEndpoint", "passwordPolicy"]),
                rng.pick(&[
                    "us-east-1",
                    "orders",
                    "https://auth.example.com/oauth/token",
                    "strict"
                ])
            ),
            _ => format!("  \"enabled\": {},", rng.pick(&["true", "false"])),
        };
    }
    match n {
        0 => format!(
            "{comment} rotate the password every {} days",
            rng.below(90) + 1
        ),
        1 => format!("{comment} the token is read from the environment at start-up"),
        2 => format!("{comment} TODO: move the api key lookup into the secrets manager"),
        3 => match lang {
            Lang::Python => "def refresh_token(session):".into(),
            Lang::JavaScript => "function refreshToken(session) {".into(),
            Lang::Go => "func refreshToken(s *Session) error {".into(),
            Lang::Rust => "fn refresh_token(session: &mut Session) -> Result<()> {".into(),
            Lang::Java => "    public Token refreshToken(Session session) {".into(),
            _ => format!("{comment} see refresh_token()"),
        },
        4 => assign(
            lang,
            rng.pick(&["timeout_seconds", "max_retries", "port"]),
            &rng.below(10_000).to_string(),
        ),
        5 => assign(
            lang,
            rng.pick(&["region", "log_level", "service_name"]),
            rng.pick(&["eu-west-1", "info", "orders-api"]),
        ),
        6 => assign(lang, "token_endpoint", "https://auth.internal/oauth2/token"),
        7 => assign(lang, "password_min_length", "12"),
        8 => assign(lang, "secret_key_env", "APP_SECRET_KEY"),
        9 => match lang {
            Lang::Python => "    if not user.password_hash:".into(),
            Lang::Go => "\tif token == \"\" { return ErrNoToken }".into(),
            Lang::JavaScript => "  if (!token) throw new Error('missing token');".into(),
            _ => format!("{comment} check the credential before use"),
        },
        10 => assign(lang, "build_id", &rng.below(100_000).to_string()),
        11 => format!(
            "{comment} {}",
            rng.pick(&[
                "retry with backoff",
                "keep this sorted",
                "see docs/auth.md",
                "added in v2"
            ])
        ),
        _ => String::new(),
    }
}

/// A corpus of `files` files.
pub fn generate(seed: u64, files: usize) -> Corpus {
    generate_with(seed, files, 0)
}

/// As [`generate`], with about `extra_lines` more ordinary lines per file
/// (for throughput measurements on realistic file sizes).
pub fn generate_with(seed: u64, files: usize, extra_lines: usize) -> Corpus {
    let mut rng = Rng::new(seed);
    let mut corpus = Corpus {
        files: Vec::new(),
        secrets: Vec::new(),
        decoys: Vec::new(),
    };
    for i in 0..files {
        let (lang, ext) = LANGS[rng.below(LANGS.len())];
        let dir = rng.pick(&["src", "config", "deploy", "scripts", "services/api", "lib"]);
        let path = format!("{dir}/file{i:05}.{ext}");
        let mut lines: Vec<String> = Vec::new();
        if matches!(lang, Lang::Json) {
            lines.push("{".into());
        }
        let plants = 1 + rng.below(4);
        for _ in 0..plants {
            for _ in 0..rng.below(12) {
                lines.push(filler(&mut rng, lang));
            }
            let is_secret = rng.below(100) < 40;
            let plant = if is_secret {
                secret(&mut rng)
            } else {
                decoy(&mut rng)
            };
            let (block, at) = match plant.kind {
                "private-key" => private_key(&mut rng, lang),
                "gcp-service-account" => service_account(&mut rng),
                _ if is_secret && rng.below(4) == 0 => (vec![elsewhere(&mut rng, lang, &plant)], 0),
                _ => (vec![assign(lang, plant.name, &plant.value)], 0),
            };
            let label = Label {
                path: path.clone(),
                line: (lines.len() + at + 1) as u32,
                kind: plant.kind.to_string(),
            };
            lines.extend(block);
            if is_secret {
                corpus.secrets.push(label);
            } else {
                corpus.decoys.push(label);
            }
        }
        let tail = rng.below(8)
            + if extra_lines > 0 {
                rng.below(2 * extra_lines)
            } else {
                0
            };
        for _ in 0..tail {
            lines.push(filler(&mut rng, lang));
        }
        if matches!(lang, Lang::Json) {
            lines.push("  \"end\": true".into());
            lines.push("}".into());
        }
        corpus.files.push((path, lines.join("\n") + "\n"));
    }
    corpus
}
