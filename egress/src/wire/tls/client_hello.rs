//! The body of a ClientHello handshake message (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2): skips to the
//! extensions and reads `server_name` (RFC 6066 §3), ALPN (RFC 7301) and `supported_versions`.

use super::reader::Reader;
use super::{ClientHelloInfo, HelloField, MalformedHello, SniError, TlsHelloError, TlsVersion};
use paddock_protocol::egress::normalize_name;
use std::net::IpAddr;

const EXTENSION_SERVER_NAME: u16 = 0;
const EXTENSION_ALPN: u16 = 16;
const EXTENSION_SUPPORTED_VERSIONS: u16 = 43;
const NAME_TYPE_HOST_NAME: u8 = 0;
const RANDOM_LEN: usize = 32;
const MAX_SESSION_ID: usize = 32;

/// Parses a ClientHello body (after the 4-byte handshake header).
pub(super) fn parse_client_hello(body: &[u8]) -> Result<ClientHelloInfo, TlsHelloError> {
    let mut hello = Reader::new(body);
    let legacy_version = hello.u16(HelloField::LegacyVersion)?;
    hello.take(RANDOM_LEN, HelloField::Random)?;
    let session_id = hello.vec_u8(HelloField::SessionId)?;
    if session_id.remaining().len() > MAX_SESSION_ID {
        return Err(MalformedHello::Invalid {
            field: HelloField::SessionId,
        }
        .into());
    }
    let cipher_suites = hello.vec_u16(HelloField::CipherSuites)?;
    let suites_len = cipher_suites.remaining().len();
    if suites_len == 0 || suites_len % 2 != 0 {
        return Err(MalformedHello::Invalid {
            field: HelloField::CipherSuites,
        }
        .into());
    }
    if hello.vec_u8(HelloField::CompressionMethods)?.is_empty() {
        return Err(MalformedHello::Invalid {
            field: HelloField::CompressionMethods,
        }
        .into());
    }
    let mut info = ClientHelloInfo {
        sni: None,
        alpn: Vec::new(),
        tls_version: TlsVersion::from_wire(legacy_version),
    };
    // Extensions may be absent altogether before TLS 1.3 (RFC 5246 §7.4.1.2).
    if hello.is_empty() {
        return Ok(info);
    }
    let mut extensions = hello.vec_u16(HelloField::Extensions)?;
    hello.finish(HelloField::Extensions)?;
    let mut seen_types = Vec::new();
    while !extensions.is_empty() {
        let extension_type = extensions.u16(HelloField::Extensions)?;
        let data = extensions.vec_u16(HelloField::Extensions)?;
        seen_types.push(extension_type);
        match extension_type {
            EXTENSION_SERVER_NAME => info.sni = Some(parse_server_name(data)?),
            EXTENSION_ALPN => info.alpn = parse_alpn(data)?,
            EXTENSION_SUPPORTED_VERSIONS => {
                if let Some(highest) = parse_supported_versions(data)? {
                    info.tls_version = highest;
                }
            }
            _ => {}
        }
    }
    seen_types.sort_unstable();
    if let Some(pair) = seen_types
        .windows(2)
        .find(|pair| pair.first() == pair.last())
    {
        let extension_type = pair.first().copied().unwrap_or_default();
        return Err(MalformedHello::DuplicateExtension { extension_type }.into());
    }
    Ok(info)
}

/// The one host name of a `server_name` extension, normalized.
fn parse_server_name(mut data: Reader<'_>) -> Result<String, TlsHelloError> {
    let mut list = data.vec_u16(HelloField::ServerName)?;
    data.finish(HelloField::ServerName)?;
    let mut host_name = None;
    while !list.is_empty() {
        let name_type = list.u8(HelloField::ServerName)?;
        let name = list.vec_u16(HelloField::ServerName)?.remaining();
        if name_type != NAME_TYPE_HOST_NAME {
            continue;
        }
        if host_name.replace(name).is_some() {
            return Err(SniError::MoreThanOneName.into());
        }
    }
    let name = host_name.ok_or(SniError::NoHostName)?;
    let name = std::str::from_utf8(name)
        .ok()
        .filter(|text| text.is_ascii())
        .ok_or(SniError::NotAscii)?;
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Err(SniError::IpAddress(ip).into());
    }
    Ok(normalize_name(name).map_err(SniError::BadName)?)
}

/// The protocol names of an ALPN extension (each 1 to 255 bytes, at least one).
fn parse_alpn(mut data: Reader<'_>) -> Result<Vec<Vec<u8>>, TlsHelloError> {
    let mut list = data.vec_u16(HelloField::Alpn)?;
    data.finish(HelloField::Alpn)?;
    let mut protocols = Vec::new();
    while !list.is_empty() {
        let protocol = list.vec_u8(HelloField::Alpn)?.remaining();
        if protocol.is_empty() {
            return Err(MalformedHello::Invalid {
                field: HelloField::Alpn,
            }
            .into());
        }
        protocols.push(protocol.to_vec());
    }
    if protocols.is_empty() {
        return Err(MalformedHello::Invalid {
            field: HelloField::Alpn,
        }
        .into());
    }
    Ok(protocols)
}

/// The highest known version of a `supported_versions` extension (GREASE and unknown values
/// ignored), `None` if it lists none.
fn parse_supported_versions(mut data: Reader<'_>) -> Result<Option<TlsVersion>, TlsHelloError> {
    let mut list = data.vec_u8(HelloField::SupportedVersions)?;
    data.finish(HelloField::SupportedVersions)?;
    if list.is_empty() || list.remaining().len() % 2 != 0 {
        return Err(MalformedHello::Invalid {
            field: HelloField::SupportedVersions,
        }
        .into());
    }
    let mut highest = None;
    while !list.is_empty() {
        let version = TlsVersion::from_wire(list.u16(HelloField::SupportedVersions)?);
        if !matches!(version, TlsVersion::Other(_)) {
            highest = highest.max(Some(version));
        }
    }
    Ok(highest)
}
