//! Places: points on the earth, exact great-circle (haversine) distances,
//! and the city table a matrix search's `near: {city, state, miles}`
//! resolves from. The table ships with the project: nothing is looked up
//! over the network.
//!
//! An item has a place when its metadata holds `location: {lat, lon}`
//! (degrees, WGS 84); the filter operators `geo_radius` and `geo_bbox`
//! test it (see `filter.rs`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The earth's mean radius (IUGG), in km.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;
pub const KM_PER_MILE: f64 = 1.609344;
/// Half the earth's circumference: no two points are farther apart, so
/// no radius needs to be larger.
pub const MAX_RADIUS_KM: f64 = 20_016.0;

/// A point on the earth, in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Point {
    /// −90 to 90.
    pub lat: f64,
    /// −180 to 180.
    pub lon: f64,
}

impl Point {
    /// A point, if `lat` and `lon` are finite and in range.
    pub fn new(lat: f64, lon: f64) -> Result<Self, String> {
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(format!("lat must be a number from -90 to 90, got {lat}"));
        }
        if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
            return Err(format!("lon must be a number from -180 to 180, got {lon}"));
        }
        Ok(Self { lat, lon })
    }

    /// A JSON object `{"lat": …, "lon": …}` (and nothing else) as a point.
    pub fn parse(value: &Value) -> Result<Self, String> {
        let Value::Object(object) = value else {
            return Err("a location is an object {\"lat\": …, \"lon\": …}".into());
        };
        if let Some(other) = object.keys().find(|k| *k != "lat" && *k != "lon") {
            return Err(format!("a location holds lat and lon only, not '{other}'"));
        }
        let number = |key: &str| {
            object
                .get(key)
                .and_then(Value::as_f64)
                .ok_or_else(|| format!("a location needs a number '{key}'"))
        };
        Self::new(number("lat")?, number("lon")?)
    }

    /// The metadata value as a point, if it is a valid one.
    pub fn of(value: Option<&Value>) -> Option<Self> {
        Self::parse(value?).ok()
    }

    /// The great-circle distance to `other`, in km (haversine: exact on a
    /// sphere, and well-conditioned for short distances).
    pub fn distance_km(&self, other: &Point) -> f64 {
        let (lat1, lat2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlat = lat2 - lat1;
        let dlon = (other.lon - self.lon).to_radians();
        let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
        // atan2 keeps its precision near the antipodes, where asin does not.
        let h = h.clamp(0.0, 1.0);
        2.0 * EARTH_RADIUS_KM * h.sqrt().atan2((1.0 - h).sqrt())
    }
}

/// A radius in km from a `miles` or `km` value: positive, finite, at most
/// half the earth's circumference.
pub fn radius_km(miles: Option<f64>, km: Option<f64>) -> Result<f64, String> {
    let km = match (miles, km) {
        (Some(miles), None) => miles * KM_PER_MILE,
        (None, Some(km)) => km,
        (Some(_), Some(_)) => return Err("give the radius in miles or in km, not both".into()),
        (None, None) => return Err("needs a radius: 'miles' or 'km'".into()),
    };
    if !km.is_finite() || km <= 0.0 || km > MAX_RADIUS_KM {
        return Err(format!(
            "a radius is above 0 and at most {MAX_RADIUS_KM} km ({:.0} miles)",
            MAX_RADIUS_KM / KM_PER_MILE
        ));
    }
    Ok(km)
}

/// The point of a city in the table (`city` and `state` compared without
/// case or surrounding spaces; `state` is the two-letter code).
pub fn city(name: &str, state: &str) -> Option<Point> {
    let (name, state) = (name.trim(), state.trim());
    CITIES
        .iter()
        .find(|(c, s, _, _)| c.eq_ignore_ascii_case(name) && s.eq_ignore_ascii_case(state))
        .map(|&(_, _, lat, lon)| Point { lat, lon })
}

/// US cities: `(name, state, lat, lon)`, city-hall coordinates to about
/// a kilometre. Every city of the seeded corpus is here, with the
/// suburbs and neighbours a coordinator names around them.
pub const CITIES: &[(&str, &str, f64, f64)] = &[
    ("Chicago", "IL", 41.8781, -87.6298),
    ("Aurora", "IL", 41.7606, -88.3201),
    ("Rockford", "IL", 42.2711, -89.0940),
    ("Joliet", "IL", 41.5250, -88.0817),
    ("Naperville", "IL", 41.7508, -88.1535),
    ("Bolingbrook", "IL", 41.6986, -88.0684),
    ("Elgin", "IL", 42.0354, -88.2826),
    ("Waukegan", "IL", 42.3636, -87.8448),
    ("Schaumburg", "IL", 42.0334, -88.0834),
    ("Cicero", "IL", 41.8456, -87.7539),
    ("Kankakee", "IL", 41.1200, -87.8612),
    ("Peoria", "IL", 40.6936, -89.5890),
    ("Springfield", "IL", 39.7817, -89.6501),
    ("Gary", "IN", 41.5934, -87.3464),
    ("Hammond", "IN", 41.5834, -87.5000),
    ("Houston", "TX", 29.7604, -95.3698),
    ("Pasadena", "TX", 29.6911, -95.2091),
    ("Dallas", "TX", 32.7767, -96.7970),
    ("Plano", "TX", 33.0198, -96.6989),
    ("Irving", "TX", 32.8140, -96.9489),
    ("Arlington", "TX", 32.7357, -97.1081),
    ("Austin", "TX", 30.2672, -97.7431),
    ("San Antonio", "TX", 29.4241, -98.4936),
    ("Fort Worth", "TX", 32.7555, -97.3308),
    ("El Paso", "TX", 31.7619, -106.4850),
    ("Los Angeles", "CA", 34.0522, -118.2437),
    ("Long Beach", "CA", 33.7701, -118.1937),
    ("Anaheim", "CA", 33.8366, -117.9143),
    ("San Diego", "CA", 32.7157, -117.1611),
    ("San Jose", "CA", 37.3382, -121.8863),
    ("San Francisco", "CA", 37.7749, -122.4194),
    ("Oakland", "CA", 37.8044, -122.2712),
    ("Fresno", "CA", 36.7378, -119.7871),
    ("Sacramento", "CA", 38.5816, -121.4944),
    ("Riverside", "CA", 33.9533, -117.3962),
    ("San Bernardino", "CA", 34.1083, -117.2898),
    ("Phoenix", "AZ", 33.4484, -112.0740),
    ("Tucson", "AZ", 32.2226, -110.9747),
    ("Mesa", "AZ", 33.4152, -111.8315),
    ("Tempe", "AZ", 33.4255, -111.9400),
    ("Philadelphia", "PA", 39.9526, -75.1652),
    ("Pittsburgh", "PA", 40.4406, -79.9959),
    ("Allentown", "PA", 40.6023, -75.4714),
    ("Jacksonville", "FL", 30.3322, -81.6557),
    ("Miami", "FL", 25.7617, -80.1918),
    ("Fort Lauderdale", "FL", 26.1224, -80.1373),
    ("Tampa", "FL", 27.9506, -82.4572),
    ("St. Petersburg", "FL", 27.7676, -82.6403),
    ("Orlando", "FL", 28.5383, -81.3792),
    ("Columbus", "OH", 39.9612, -82.9988),
    ("Cleveland", "OH", 41.4993, -81.6944),
    ("Akron", "OH", 41.0814, -81.5190),
    ("Cincinnati", "OH", 39.1031, -84.5120),
    ("Dayton", "OH", 39.7589, -84.1916),
    ("Toledo", "OH", 41.6528, -83.5379),
    ("Indianapolis", "IN", 39.7684, -86.1581),
    ("Fort Wayne", "IN", 41.0793, -85.1394),
    ("Charlotte", "NC", 35.2271, -80.8431),
    ("Raleigh", "NC", 35.7796, -78.6382),
    ("Durham", "NC", 35.9940, -78.8986),
    ("Greensboro", "NC", 36.0726, -79.7920),
    ("Detroit", "MI", 42.3314, -83.0458),
    ("Dearborn", "MI", 42.3223, -83.1763),
    ("Grand Rapids", "MI", 42.9634, -85.6681),
    ("Memphis", "TN", 35.1495, -90.0490),
    ("Nashville", "TN", 36.1627, -86.7816),
    ("Atlanta", "GA", 33.7490, -84.3880),
    ("Marietta", "GA", 33.9526, -84.5499),
    ("Savannah", "GA", 32.0809, -81.0912),
    ("Milwaukee", "WI", 43.0389, -87.9065),
    ("Kenosha", "WI", 42.5847, -87.8212),
    ("Madison", "WI", 43.0731, -89.4012),
    ("Minneapolis", "MN", 44.9778, -93.2650),
    ("St. Paul", "MN", 44.9537, -93.0900),
    ("Kansas City", "MO", 39.0997, -94.5786),
    ("Kansas City", "KS", 39.1142, -94.6275),
    ("St. Louis", "MO", 38.6270, -90.1994),
    ("Louisville", "KY", 38.2527, -85.7585),
    ("Lexington", "KY", 38.0406, -84.5037),
    ("Denver", "CO", 39.7392, -104.9903),
    ("Aurora", "CO", 39.7294, -104.8319),
    ("Colorado Springs", "CO", 38.8339, -104.8214),
    ("Seattle", "WA", 47.6062, -122.3321),
    ("Tacoma", "WA", 47.2529, -122.4443),
    ("Spokane", "WA", 47.6588, -117.4260),
    ("Portland", "OR", 45.5152, -122.6784),
    ("Las Vegas", "NV", 36.1699, -115.1398),
    ("Henderson", "NV", 36.0395, -114.9817),
    ("Reno", "NV", 39.5296, -119.8138),
    ("Salt Lake City", "UT", 40.7608, -111.8910),
    ("Omaha", "NE", 41.2565, -95.9345),
    ("Oklahoma City", "OK", 35.4676, -97.5164),
    ("Tulsa", "OK", 36.1540, -95.9928),
    ("Albuquerque", "NM", 35.0844, -106.6504),
    ("Birmingham", "AL", 33.5186, -86.8104),
    ("Baltimore", "MD", 39.2904, -76.6122),
    ("Washington", "DC", 38.9072, -77.0369),
    ("Boston", "MA", 42.3601, -71.0589),
    ("Newark", "NJ", 40.7357, -74.1724),
    ("Jersey City", "NJ", 40.7178, -74.0431),
    ("New York", "NY", 40.7128, -74.0060),
    ("Buffalo", "NY", 42.8864, -78.8784),
    ("Richmond", "VA", 37.5407, -77.4360),
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn distances_match_known_ones() {
        let joliet = city("Joliet", "IL").unwrap();
        let chicago = city("chicago", " il ").unwrap();
        // Joliet to Chicago's loop: about 35 miles as the crow flies.
        let miles = joliet.distance_km(&chicago) / KM_PER_MILE;
        assert!((33.0..38.0).contains(&miles), "{miles}");
        // A quarter of the equator.
        let quarter = Point::new(0.0, 0.0)
            .unwrap()
            .distance_km(&Point::new(0.0, 90.0).unwrap());
        assert!((quarter - EARTH_RADIUS_KM * std::f64::consts::FRAC_PI_2).abs() < 1e-6);
        // Antipodes, and across the antimeridian the short way.
        let antipodes = Point::new(10.0, 170.0)
            .unwrap()
            .distance_km(&Point::new(-10.0, -10.0).unwrap());
        assert!(
            (antipodes - EARTH_RADIUS_KM * std::f64::consts::PI).abs() < 1e-3,
            "{antipodes}"
        ); // a metre: h rounds near 1
        let across = Point::new(0.0, 179.5)
            .unwrap()
            .distance_km(&Point::new(0.0, -179.5).unwrap());
        assert!((across - 111.2).abs() < 0.5, "{across}");
        assert_eq!(joliet.distance_km(&joliet), 0.0);
    }

    #[test]
    fn bad_points_and_radii_are_refused() {
        for bad in [
            json!({"lat": 91, "lon": 0}),
            json!({"lat": 0, "lon": -180.5}),
            json!({"lat": "41", "lon": 0}),
            json!({"lat": 41}),
            json!({"lat": 41, "lon": -88, "alt": 3}),
            json!([41, -88]),
        ] {
            assert!(Point::parse(&bad).is_err(), "{bad}");
        }
        assert_eq!(
            Point::parse(&json!({"lat": -90, "lon": 180})).unwrap(),
            Point {
                lat: -90.0,
                lon: 180.0
            }
        );
        assert!(radius_km(Some(0.0), None).is_err());
        assert!(radius_km(None, Some(f64::INFINITY)).is_err());
        assert!(radius_km(Some(1.0), Some(1.0)).is_err());
        assert!(radius_km(None, None).is_err());
        assert!(radius_km(None, Some(30_000.0)).is_err());
        assert!((radius_km(Some(25.0), None).unwrap() - 40.2336).abs() < 1e-9);
    }

    #[test]
    fn every_corpus_city_is_in_the_table_once() {
        for (name, state) in crate::domain::workers::cities() {
            assert!(city(name, state).is_some(), "{name}, {state}");
        }
        let mut seen = std::collections::HashSet::new();
        for (name, state, lat, lon) in CITIES {
            assert!(seen.insert((name, state)), "{name}, {state} twice");
            assert!(Point::new(*lat, *lon).is_ok(), "{name}");
        }
        assert!(city("Atlantis", "GA").is_none());
    }
}
