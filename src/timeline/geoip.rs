//! Source IP enrichment from MaxMind-format databases the user provides
//! (GeoLite2/GeoIP2 ASN and Country, or any database with the same fields).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
#[error("cannot read the GeoIP database {path}: {reason}")]
pub struct GeoIpError {
    pub path: PathBuf,
    pub reason: String,
}

/// What is known of an address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Place {
    pub asn: Option<u32>,
    pub org: Option<String>,
    pub country: Option<String>,
}

#[derive(Deserialize)]
struct Record<'a> {
    autonomous_system_number: Option<u32>,
    autonomous_system_organization: Option<&'a str>,
    #[serde(borrow)]
    country: Option<Country<'a>>,
    #[serde(borrow)]
    registered_country: Option<Country<'a>>,
}

#[derive(Deserialize)]
struct Country<'a> {
    iso_code: Option<&'a str>,
}

/// One or more databases; each address takes the fields the first database
/// that knows it gives (an ASN file and a Country file together).
pub struct GeoIp {
    readers: Vec<(PathBuf, maxminddb::Reader<Vec<u8>>)>,
    cache: HashMap<IpAddr, Place>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field(
                "databases",
                &self.readers.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl GeoIp {
    pub fn open(paths: &[PathBuf]) -> Result<Self, GeoIpError> {
        let mut readers = Vec::new();
        for path in paths {
            let reader = maxminddb::Reader::open_readfile(path).map_err(|e| GeoIpError {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            readers.push((path.clone(), reader));
        }
        Ok(Self {
            readers,
            cache: HashMap::new(),
        })
    }

    pub fn paths(&self) -> Vec<&Path> {
        self.readers.iter().map(|(p, _)| p.as_path()).collect()
    }

    /// Looks an address up; an address no database covers is an empty place.
    pub fn lookup(&mut self, ip: IpAddr) -> Place {
        if let Some(p) = self.cache.get(&ip) {
            return p.clone();
        }
        let mut place = Place::default();
        for (_, reader) in &self.readers {
            // A damaged entry reads as unknown: enrichment never stops an ingest.
            let Ok(Some(rec)) = reader.lookup::<Record>(ip) else {
                continue;
            };
            if place.asn.is_none() {
                place.asn = rec.autonomous_system_number;
            }
            if place.org.is_none() {
                place.org = rec.autonomous_system_organization.map(str::to_owned);
            }
            if place.country.is_none() {
                place.country = rec
                    .country
                    .or(rec.registered_country)
                    .and_then(|c| c.iso_code)
                    .map(str::to_owned);
            }
        }
        self.cache.insert(ip, place.clone());
        place
    }
}
