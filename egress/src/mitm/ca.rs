//! The sandbox's certificate authority: an ECDSA P-256 CA kept in `ca.pem` (0644, given to the
//! guest to trust) and `ca.key` (0600), and the per-host leaf certificates it signs for the
//! hosts whose TLS the proxy terminates.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use paddock_protocol::egress::normalize_name;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;

use super::error::CaError;
use super::tls_provider;

/// The CA certificate's file name in the CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA key's file name in the CA directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// How long a new CA is valid.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How far back a certificate's validity starts (clock skew between host and guest).
const BACKDATE: Duration = Duration::from_secs(24 * 3600);
/// How long a leaf certificate is valid.
const LEAF_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);
/// A cached leaf is replaced after this long, well before it expires.
const LEAF_REFRESH: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most cached leaves (the hosts with a secret are few; a full cache is cleared).
const MAX_CACHED_LEAVES: usize = 256;
/// Largest CA file read.
const MAX_CA_FILE_LEN: u64 = 64 * 1024;

/// The sandbox's CA: its key, its certificate, and the leaf configurations made so far.
pub struct SandboxCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    leaves: Mutex<HashMap<String, CachedLeaf>>,
}

struct CachedLeaf {
    made: Instant,
    config: Arc<ServerConfig>,
}

impl SandboxCa {
    /// Loads the CA from `dir/ca.pem` and `dir/ca.key`, or makes a new one there if there is
    /// no certificate (the directory is created 0700).
    pub fn load_or_create(dir: &Path) -> Result<Self, CaError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = match read_bounded(&cert_path) {
            Ok(pem) => Some(pem),
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(CaError::Read {
                    path: cert_path,
                    source,
                })
            }
        };
        match cert_pem {
            Some(cert_pem) => Self::load(cert_pem, &cert_path, &key_path),
            None => Self::create(dir, &cert_path, &key_path),
        }
    }

    /// The CA certificate in PEM form, for the guest's trust store.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate in DER form.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// A TLS server configuration presenting a leaf certificate for `host` signed by this CA
    /// (made once and cached), offering ALPN `http/1.1` only.
    pub fn server_config_for(&self, host: &str) -> Result<Arc<ServerConfig>, CaError> {
        let invalid = || CaError::InvalidHost {
            host: host.to_owned(),
        };
        if host.parse::<IpAddr>().is_ok() {
            return Err(invalid());
        }
        let host = normalize_name(host).map_err(|_| invalid())?;
        let mut leaves = self.leaves.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(leaf) = leaves.get(&host) {
            if leaf.made.elapsed() < LEAF_REFRESH {
                return Ok(Arc::clone(&leaf.config));
            }
        }
        let config = self.make_leaf_config(&host)?;
        if leaves.len() >= MAX_CACHED_LEAVES {
            leaves.clear();
        }
        leaves.insert(
            host,
            CachedLeaf {
                made: Instant::now(),
                config: Arc::clone(&config),
            },
        );
        Ok(config)
    }

    fn load(cert_pem: String, cert_path: &Path, key_path: &Path) -> Result<Self, CaError> {
        let key_pem = match read_private(key_path) {
            Ok(pem) => pem,
            Err(CaError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(CaError::MissingKey {
                    certificate: cert_path.to_owned(),
                    key: key_path.to_owned(),
                })
            }
            Err(error) => return Err(error),
        };
        let key = KeyPair::from_pem(&key_pem).map_err(|source| CaError::ParseKey {
            path: key_path.to_owned(),
            source,
        })?;
        let parse_error = |source| CaError::ParseCertificate {
            path: cert_path.to_owned(),
            source,
        };
        let cert_der = pem_to_der(&cert_pem).map_err(parse_error)?;
        // The certificate's subject public key must be this key's.
        if !contains(cert_der.as_ref(), key.public_key_raw()) {
            return Err(CaError::KeyMismatch {
                path: cert_path.to_owned(),
            });
        }
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(parse_error)?;
        Ok(SandboxCa {
            issuer,
            cert_pem,
            cert_der,
            leaves: Mutex::default(),
        })
    }

    fn create(dir: &Path, cert_path: &Path, key_path: &Path) -> Result<Self, CaError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| CaError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(CaError::Generate)?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(
            DnType::CommonName,
            format!("paddock sandbox CA {}", hex(&random_bytes::<8>()?)),
        );
        name.push(DnType::OrganizationName, "paddock");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + CA_VALIDITY).into();
        params.serial_number = Some(random_serial()?);
        let cert = params.self_signed(&key).map_err(CaError::Generate)?;
        write_file(key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(cert_path, cert.pem().as_bytes(), 0o644)?;
        Ok(SandboxCa {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            leaves: Mutex::default(),
        })
    }

    fn make_leaf_config(&self, host: &str) -> Result<Arc<ServerConfig>, CaError> {
        let mut params =
            CertificateParams::new(vec![host.to_owned()]).map_err(CaError::Generate)?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, host);
        params.distinguished_name = name;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = SystemTime::now();
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + LEAF_VALIDITY).into();
        params.serial_number = Some(random_serial()?);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(CaError::Generate)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(CaError::Generate)?;
        let chain = vec![cert.der().clone(), self.cert_der.clone()];
        let private_key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = ServerConfig::builder_with_provider(tls_provider())
            .with_safe_default_protocol_versions()
            .map_err(CaError::Tls)?
            .with_no_client_auth()
            .with_single_cert(chain, private_key)
            .map_err(CaError::Tls)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl fmt::Debug for SandboxCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxCa")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// Reads a file of at most [`MAX_CA_FILE_LEN`] bytes as text.
fn read_bounded(path: &Path) -> io::Result<String> {
    let mut text = String::new();
    File::open(path)?
        .take(MAX_CA_FILE_LEN)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// Reads the key file, refusing one that its group or others can access.
fn read_private(path: &Path) -> Result<String, CaError> {
    let read_error = |source| CaError::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    let mode = file.metadata().map_err(read_error)?.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(CaError::InsecureKeyPermissions {
            path: path.to_owned(),
            mode,
        });
    }
    let mut text = String::new();
    file.take(MAX_CA_FILE_LEN)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    Ok(text)
}

/// Writes `contents` to a new file with `mode` next to `path`, then renames it into place.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let temp_path = PathBuf::from(format!("{}.{}.tmp", path.display(), std::process::id()));
    write_and_rename(&temp_path, path, contents, mode).map_err(|source| {
        let _ = fs::remove_file(&temp_path);
        CaError::Write {
            path: path.to_owned(),
            source,
        }
    })
}

fn write_and_rename(temp_path: &Path, path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    // A leftover of an earlier crash would make `create_new` fail.
    let _ = fs::remove_file(temp_path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(temp_path)?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(temp_path, path)
}

/// The DER of the first certificate in `pem`.
fn pem_to_der(pem: &str) -> Result<CertificateDer<'static>, rcgen::Error> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| rcgen::Error::CouldNotParseCertificate)
}

/// Bytes from the operating system's secure random source.
fn random_bytes<const N: usize>() -> Result<[u8; N], CaError> {
    let mut bytes = [0; N];
    tls_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| CaError::Generate(rcgen::Error::RingUnspecified))?;
    Ok(bytes)
}

/// A random positive 16-byte certificate serial number.
fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = random_bytes::<16>()?;
    if let Some(first) = bytes.first_mut() {
        *first &= 0x7f;
        *first |= 0x01;
    }
    Ok(SerialNumber::from_slice(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}
