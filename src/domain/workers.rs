//! The synthetic staffing corpus: deterministic workers (same seed, same
//! corpus; worker `i` depends only on the seed and `i`, so the first workers
//! are the same whatever the corpus size) and their profile sentences.

use serde::{Deserialize, Serialize};

/// A role: its name, typical skills and certifications, base hourly rate.
struct Role {
    name: &'static str,
    skills: &'static [&'static str],
    certifications: &'static [&'static str],
    base_rate: f32,
}

const ROLES: &[Role] = &[
    Role {
        name: "Forklift Operator",
        skills: &[
            "sit-down forklift",
            "reach truck",
            "pallet jack",
            "inventory counts",
            "loading docks",
        ],
        certifications: &["OSHA Forklift Certification", "OSHA 10"],
        base_rate: 19.0,
    },
    Role {
        name: "CNC Operator",
        skills: &[
            "CNC milling",
            "CNC lathe",
            "G-code",
            "blueprint reading",
            "calipers and micrometers",
        ],
        certifications: &["NIMS CNC Operator", "OSHA 10"],
        base_rate: 23.0,
    },
    Role {
        name: "Welder",
        skills: &[
            "MIG welding",
            "TIG welding",
            "stick welding",
            "flux-core",
            "blueprint reading",
        ],
        certifications: &["AWS Certified Welder", "OSHA 10"],
        base_rate: 25.0,
    },
    Role {
        name: "Picker/Packer",
        skills: &[
            "order picking",
            "RF scanner",
            "packing",
            "shipping labels",
            "quality checks",
        ],
        certifications: &["Warehouse Safety"],
        base_rate: 16.5,
    },
    Role {
        name: "CDL Driver",
        skills: &[
            "CDL-A",
            "pre-trip inspections",
            "ELD logs",
            "route planning",
            "load securement",
        ],
        certifications: &["CDL Class A", "HazMat Endorsement", "DOT Medical Card"],
        base_rate: 24.0,
    },
    Role {
        name: "Machine Operator",
        skills: &[
            "machine setup",
            "production lines",
            "quality inspection",
            "lockout/tagout",
            "preventive maintenance",
        ],
        certifications: &["OSHA 10", "Lockout/Tagout"],
        base_rate: 18.5,
    },
    Role {
        name: "Assembler",
        skills: &[
            "hand tools",
            "power tools",
            "assembly lines",
            "schematics",
            "soldering",
        ],
        certifications: &["IPC-A-610", "OSHA 10"],
        base_rate: 17.5,
    },
    Role {
        name: "Electrician",
        skills: &[
            "conduit bending",
            "panel wiring",
            "troubleshooting",
            "NEC code",
            "motor controls",
        ],
        certifications: &["Journeyman Electrician License", "OSHA 30"],
        base_rate: 32.0,
    },
    Role {
        name: "HVAC Technician",
        skills: &[
            "refrigeration",
            "ductwork",
            "furnace repair",
            "thermostats",
            "brazing",
        ],
        certifications: &["EPA 608 Universal", "NATE Certification"],
        base_rate: 29.0,
    },
    Role {
        name: "Warehouse Associate",
        skills: &[
            "receiving",
            "stocking",
            "cycle counts",
            "RF scanner",
            "shipping",
        ],
        certifications: &["Warehouse Safety", "OSHA 10"],
        base_rate: 16.0,
    },
    Role {
        name: "Line Cook",
        skills: &[
            "grill",
            "saute",
            "prep work",
            "food safety",
            "high-volume service",
        ],
        certifications: &["ServSafe Food Handler"],
        base_rate: 16.5,
    },
    Role {
        name: "Security Guard",
        skills: &[
            "patrols",
            "access control",
            "incident reports",
            "CCTV monitoring",
            "de-escalation",
        ],
        certifications: &["Guard Card", "CPR/First Aid"],
        base_rate: 17.0,
    },
    Role {
        name: "Caregiver",
        skills: &[
            "personal care",
            "medication reminders",
            "meal preparation",
            "mobility assistance",
            "companionship",
        ],
        certifications: &["CNA", "CPR/First Aid"],
        base_rate: 16.5,
    },
    Role {
        name: "Certified Nursing Assistant",
        skills: &[
            "vital signs",
            "patient care",
            "charting",
            "infection control",
            "transfers",
        ],
        certifications: &["CNA", "BLS"],
        base_rate: 19.0,
    },
    Role {
        name: "Dishwasher",
        skills: &[
            "dish machine",
            "kitchen sanitation",
            "pot washing",
            "stocking",
            "food safety",
        ],
        certifications: &["ServSafe Food Handler"],
        base_rate: 14.5,
    },
    Role {
        name: "Janitor",
        skills: &[
            "floor care",
            "restroom sanitation",
            "trash removal",
            "chemical handling",
            "buffing",
        ],
        certifications: &["OSHA 10"],
        base_rate: 15.5,
    },
    Role {
        name: "Housekeeper",
        skills: &[
            "room turnover",
            "laundry",
            "linen handling",
            "guest service",
            "inventory",
        ],
        certifications: &["Hospitality Safety"],
        base_rate: 15.0,
    },
    Role {
        name: "Customer Service Representative",
        skills: &[
            "call handling",
            "CRM software",
            "order entry",
            "de-escalation",
            "typing 50 wpm",
        ],
        certifications: &["Customer Service Certificate"],
        base_rate: 17.5,
    },
    Role {
        name: "Receptionist",
        skills: &[
            "phone etiquette",
            "scheduling",
            "data entry",
            "Microsoft Office",
            "visitor check-in",
        ],
        certifications: &["Microsoft Office Specialist"],
        base_rate: 16.5,
    },
    Role {
        name: "Administrative Assistant",
        skills: &[
            "calendar management",
            "Excel",
            "document preparation",
            "filing",
            "travel booking",
        ],
        certifications: &["Microsoft Office Specialist"],
        base_rate: 19.5,
    },
    Role {
        name: "Data Entry Clerk",
        skills: &[
            "10-key",
            "typing 60 wpm",
            "Excel",
            "data verification",
            "record keeping",
        ],
        certifications: &["Microsoft Office Specialist"],
        base_rate: 16.0,
    },
    Role {
        name: "Carpenter",
        skills: &[
            "framing",
            "finish carpentry",
            "blueprint reading",
            "power tools",
            "concrete forms",
        ],
        certifications: &["OSHA 30"],
        base_rate: 26.0,
    },
    Role {
        name: "General Laborer",
        skills: &[
            "lifting 50 lbs",
            "site cleanup",
            "material handling",
            "hand tools",
            "demolition",
        ],
        certifications: &["OSHA 10"],
        base_rate: 16.0,
    },
    Role {
        name: "Construction Laborer",
        skills: &[
            "excavation",
            "concrete pouring",
            "scaffolding",
            "flagging",
            "power tools",
        ],
        certifications: &["OSHA 10", "Flagger Certification"],
        base_rate: 19.0,
    },
    Role {
        name: "Painter",
        skills: &[
            "spray painting",
            "surface prep",
            "drywall repair",
            "caulking",
            "color matching",
        ],
        certifications: &["EPA Lead-Safe"],
        base_rate: 21.0,
    },
    Role {
        name: "Plumber",
        skills: &[
            "pipe fitting",
            "drain cleaning",
            "water heaters",
            "PEX and copper",
            "backflow testing",
        ],
        certifications: &["Journeyman Plumber License", "OSHA 10"],
        base_rate: 30.0,
    },
    Role {
        name: "Maintenance Technician",
        skills: &[
            "electrical troubleshooting",
            "hydraulics",
            "pneumatics",
            "PLC basics",
            "preventive maintenance",
        ],
        certifications: &["OSHA 10", "EPA 608"],
        base_rate: 25.0,
    },
    Role {
        name: "Quality Inspector",
        skills: &[
            "first article inspection",
            "CMM",
            "GD&T",
            "SPC",
            "calipers and micrometers",
        ],
        certifications: &["ASQ CQI", "OSHA 10"],
        base_rate: 22.0,
    },
    Role {
        name: "Shipping Clerk",
        skills: &[
            "bills of lading",
            "freight scheduling",
            "WMS software",
            "label printing",
            "carrier pickups",
        ],
        certifications: &["Warehouse Safety"],
        base_rate: 17.0,
    },
    Role {
        name: "Delivery Driver",
        skills: &[
            "route delivery",
            "customer signatures",
            "vehicle inspection",
            "GPS navigation",
            "lifting 50 lbs",
        ],
        certifications: &["Clean Driving Record", "DOT Medical Card"],
        base_rate: 18.5,
    },
    Role {
        name: "Production Worker",
        skills: &[
            "production lines",
            "packaging",
            "quality checks",
            "machine feeding",
            "GMP",
        ],
        certifications: &["GMP Training", "OSHA 10"],
        base_rate: 16.5,
    },
    Role {
        name: "Food Packer",
        skills: &[
            "food packaging",
            "GMP",
            "sanitation",
            "labeling",
            "weighing",
        ],
        certifications: &["ServSafe Food Handler", "GMP Training"],
        base_rate: 15.5,
    },
    Role {
        name: "Server",
        skills: &[
            "table service",
            "POS systems",
            "wine pairing",
            "upselling",
            "banquets",
        ],
        certifications: &["ServSafe Alcohol", "ServSafe Food Handler"],
        base_rate: 14.0,
    },
    Role {
        name: "Bartender",
        skills: &[
            "mixology",
            "cash handling",
            "inventory",
            "POS systems",
            "customer service",
        ],
        certifications: &["ServSafe Alcohol", "TIPS Certification"],
        base_rate: 15.0,
    },
    Role {
        name: "Landscaper",
        skills: &[
            "mowing",
            "irrigation",
            "planting",
            "hardscaping",
            "equipment maintenance",
        ],
        certifications: &["Pesticide Applicator License"],
        base_rate: 17.0,
    },
];

/// (city, state, area code)
const CITIES: &[(&str, &str, &str)] = &[
    ("Chicago", "IL", "312"),
    ("Aurora", "IL", "630"),
    ("Rockford", "IL", "815"),
    ("Joliet", "IL", "815"),
    ("Houston", "TX", "713"),
    ("Dallas", "TX", "214"),
    ("Austin", "TX", "512"),
    ("San Antonio", "TX", "210"),
    ("Fort Worth", "TX", "817"),
    ("El Paso", "TX", "915"),
    ("Los Angeles", "CA", "213"),
    ("San Diego", "CA", "619"),
    ("San Jose", "CA", "408"),
    ("Fresno", "CA", "559"),
    ("Sacramento", "CA", "916"),
    ("Riverside", "CA", "951"),
    ("Phoenix", "AZ", "602"),
    ("Tucson", "AZ", "520"),
    ("Mesa", "AZ", "480"),
    ("Philadelphia", "PA", "215"),
    ("Pittsburgh", "PA", "412"),
    ("Allentown", "PA", "610"),
    ("Jacksonville", "FL", "904"),
    ("Miami", "FL", "305"),
    ("Tampa", "FL", "813"),
    ("Orlando", "FL", "407"),
    ("Columbus", "OH", "614"),
    ("Cleveland", "OH", "216"),
    ("Cincinnati", "OH", "513"),
    ("Dayton", "OH", "937"),
    ("Toledo", "OH", "419"),
    ("Indianapolis", "IN", "317"),
    ("Fort Wayne", "IN", "260"),
    ("Charlotte", "NC", "704"),
    ("Raleigh", "NC", "919"),
    ("Greensboro", "NC", "336"),
    ("Detroit", "MI", "313"),
    ("Grand Rapids", "MI", "616"),
    ("Memphis", "TN", "901"),
    ("Nashville", "TN", "615"),
    ("Atlanta", "GA", "404"),
    ("Savannah", "GA", "912"),
    ("Milwaukee", "WI", "414"),
    ("Madison", "WI", "608"),
    ("Minneapolis", "MN", "612"),
    ("St. Paul", "MN", "651"),
    ("Kansas City", "MO", "816"),
    ("St. Louis", "MO", "314"),
    ("Louisville", "KY", "502"),
    ("Lexington", "KY", "859"),
    ("Denver", "CO", "303"),
    ("Colorado Springs", "CO", "719"),
    ("Seattle", "WA", "206"),
    ("Spokane", "WA", "509"),
    ("Portland", "OR", "503"),
    ("Las Vegas", "NV", "702"),
    ("Reno", "NV", "775"),
    ("Salt Lake City", "UT", "801"),
    ("Omaha", "NE", "402"),
    ("Oklahoma City", "OK", "405"),
    ("Tulsa", "OK", "918"),
    ("Albuquerque", "NM", "505"),
    ("Birmingham", "AL", "205"),
    ("Baltimore", "MD", "410"),
    ("Boston", "MA", "617"),
    ("Newark", "NJ", "973"),
    ("Buffalo", "NY", "716"),
    ("Richmond", "VA", "804"),
];

const FIRST_NAMES: &[&str] = &[
    "James",
    "Maria",
    "Robert",
    "Ana",
    "Michael",
    "Jennifer",
    "David",
    "Linda",
    "Jose",
    "Patricia",
    "William",
    "Elizabeth",
    "Carlos",
    "Susan",
    "Daniel",
    "Jessica",
    "Luis",
    "Sarah",
    "Anthony",
    "Karen",
    "Kevin",
    "Nancy",
    "Brian",
    "Lisa",
    "Jorge",
    "Betty",
    "Marcus",
    "Sandra",
    "Andre",
    "Ashley",
    "Tyrone",
    "Kimberly",
    "Juan",
    "Emily",
    "Derek",
    "Donna",
    "Miguel",
    "Michelle",
    "Darnell",
    "Carol",
    "Pedro",
    "Amanda",
    "Jamal",
    "Melissa",
    "Thanh",
    "Deborah",
    "Wei",
    "Stephanie",
    "Raj",
    "Rebecca",
    "Omar",
    "Laura",
    "Ivan",
    "Sharon",
    "Tomasz",
    "Cynthia",
    "Ahmed",
    "Kathleen",
    "Kwame",
    "Angela",
];

const LAST_NAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Patel",
    "Kowalski",
    "Okafor",
    "Chen",
    "Kim",
    "Singh",
];

const AVAILABILITY: &[&str] = &[
    "immediately",
    "within 1 week",
    "within 2 weeks",
    "weekends only",
];
const SHIFTS: &[Shift] = &[
    Shift::Day,
    Shift::Night,
    Shift::Swing,
    Shift::Weekend,
    Shift::Rotating,
];

/// The shift a worker works.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Shift {
    Day,
    Swing,
    Night,
    Weekend,
    /// Days and nights in turn.
    Rotating,
}

impl Shift {
    pub fn as_str(self) -> &'static str {
        match self {
            Shift::Day => "day",
            Shift::Swing => "swing",
            Shift::Night => "night",
            Shift::Weekend => "weekend",
            Shift::Rotating => "rotating",
        }
    }
}

/// Where a worker stands with the agency. A worker without a `status` is
/// `active`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum WorkerStatus {
    /// Free to be placed.
    Active,
    /// Working an assignment now.
    OnAssignment,
    /// Placed for good (hired by a client).
    Placed,
    /// Not to be offered work.
    DoNotUse,
}

impl WorkerStatus {
    pub const ALL: [WorkerStatus; 4] = [
        WorkerStatus::Active,
        WorkerStatus::OnAssignment,
        WorkerStatus::Placed,
        WorkerStatus::DoNotUse,
    ];

    /// What a search leaves out unless it asks (`status_any`) or its own
    /// filter names `status`.
    pub const HIDDEN_BY_DEFAULT: [WorkerStatus; 2] =
        [WorkerStatus::OnAssignment, WorkerStatus::DoNotUse];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkerStatus::Active => "active",
            WorkerStatus::OnAssignment => "on_assignment",
            WorkerStatus::Placed => "placed",
            WorkerStatus::DoNotUse => "do_not_use",
        }
    }
}

/// Days, both included: `{"from": "2026-12-24", "to": "2026-12-26"}`.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct DateRange {
    /// The first day (`2026-12-24`).
    #[schema(format = Date)]
    pub from: String,
    /// The last day, on or after `from`.
    #[schema(format = Date)]
    pub to: String,
}

impl DateRange {
    /// Its days, checked: full dates, `from` not after `to`.
    pub fn days(&self) -> Result<(chrono::NaiveDate, chrono::NaiveDate), String> {
        let day = |text: &str, name: &str| {
            crate::domain::filter::full_date(text).ok_or_else(|| {
                format!(
                    "{name}: '{}' is not a date (e.g. 2026-12-07)",
                    crate::domain::shown(text, 40)
                )
            })
        };
        let (from, to) = (day(&self.from, "from")?, day(&self.to, "to")?);
        if from > to {
            return Err(format!("from ({from}) is after to ({to})"));
        }
        Ok((from, to))
    }
}

/// A worker as stored in the `workers` index metadata and dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Worker {
    pub worker_id: String,
    pub name: String,
    pub role: String,
    pub city: String,
    pub state: String,
    pub skills: Vec<String>,
    pub certifications: Vec<String>,
    pub years_experience: u32,
    pub hourly_rate: f64,
    pub availability: String,
    /// The first day the worker can start (RFC 3339), from `availability`.
    pub available_from: String,
    /// The last day the worker can work, when there is one (`2027-03-31`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_to: Option<String>,
    /// Days the worker cannot work (holidays, another booking).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<DateRange>,
    pub shift: Shift,
    pub phone: String,
    pub email: String,
    /// Where the worker lives: near the city's centre (what `geo_radius`
    /// and a matrix search's `near` measure from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<crate::domain::geo::Point>,
}

/// Day ranges in one worker's `unavailable`.
pub const MAX_UNAVAILABLE_RANGES: usize = 100;

/// Checks the fields of a worker (an item of the `workers` index) that
/// searches and the fill validator read typed: `shift` one of [`Shift`];
/// `status` one of [`WorkerStatus`];
/// `available_to` a date; `unavailable` a list of [`DateRange`];
/// `certifications` names or `{name, expires}`. Absent or null is fine.
/// On a problem: the field and why.
pub fn check_fields(
    metadata: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), (String, String)> {
    use serde_json::Value;
    let present = |name: &str| metadata.get(name).filter(|v| !v.is_null());
    let is_day = |value: &Value| {
        value
            .as_str()
            .is_some_and(|text| crate::domain::filter::day(text).is_some())
    };
    if let Some(status) = present("status") {
        if WorkerStatus::deserialize(status).is_err() {
            return Err((
                "status".into(),
                "one of active, on_assignment, placed, do_not_use".into(),
            ));
        }
    }
    if let Some(shift) = present("shift") {
        if Shift::deserialize(shift).is_err() {
            return Err((
                "shift".into(),
                "one of day, swing, night, weekend, rotating".into(),
            ));
        }
    }
    for name in ["available_from", "available_to"] {
        if let Some(value) = present(name) {
            if !is_day(value) {
                return Err((name.into(), "a date (2026-12-07 or RFC 3339)".into()));
            }
        }
    }
    if let Some(ranges) = present("unavailable") {
        let Some(ranges) = ranges.as_array() else {
            return Err(("unavailable".into(), "a list of {from, to}".into()));
        };
        if ranges.len() > MAX_UNAVAILABLE_RANGES {
            return Err((
                "unavailable".into(),
                format!("at most {MAX_UNAVAILABLE_RANGES} ranges"),
            ));
        }
        for (i, range) in ranges.iter().enumerate() {
            let parsed = DateRange::deserialize(range);
            parsed
                .map_err(|_| "a {\"from\", \"to\"} of dates (2026-12-24)".to_string())
                .and_then(|range| range.days().map(|_| ()))
                .map_err(|reason| (format!("unavailable[{i}]"), reason))?;
        }
    }
    if let Some(held) = present("certifications") {
        let Some(held) = held.as_array() else {
            return Err(("certifications".into(), "a list".into()));
        };
        for (i, certification) in held.iter().enumerate() {
            use crate::domain::filter::{credential, Expiry};
            let readable =
                credential(certification).is_some_and(|(_, expiry)| expiry != Expiry::Unreadable);
            let known_keys = certification
                .as_object()
                .is_none_or(|object| object.keys().all(|k| k == "name" || k == "expires"));
            let fine = readable && known_keys;
            if !fine {
                return Err((
                    format!("certifications[{i}]"),
                    "a name, or {\"name\", \"expires\": a date or null}".into(),
                ));
            }
        }
    }
    Ok(())
}

/// The role names of the corpus (queries for the load harness come from here).
pub fn roles() -> Vec<&'static str> {
    ROLES.iter().map(|r| r.name).collect()
}

/// `(city, state)` pairs of the corpus.
pub fn cities() -> Vec<(&'static str, &'static str)> {
    CITIES.iter().map(|(c, s, _)| (*c, *s)).collect()
}

/// splitmix64: a tiny, well-mixed generator; seeded per worker.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, index: u64) -> Self {
        let mut rng = Rng(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        rng.next();
        rng
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The corpus's "today": availability dates count from it, so the same
/// seed gives the same dates whenever it is generated.
pub const CORPUS_EPOCH: &str = "2026-12-01";

/// A start date matching the availability phrase, spread over a few days.
fn available_from(availability: &str, index: u64) -> String {
    let days = match availability {
        "immediately" => index % 3,
        "within 1 week" => 3 + index % 5,
        "within 2 weeks" => 8 + index % 7,
        _ => 5 + index % 9,
    };
    let epoch = chrono::NaiveDate::parse_from_str(CORPUS_EPOCH, "%Y-%m-%d").unwrap_or_default();
    let day = epoch + chrono::Duration::days(days as i64);
    format!("{day}T08:00:00Z")
}

/// Worker number `index` (0-based) of the corpus with `seed`.
pub fn worker(seed: u64, index: u64) -> Worker {
    let mut rng = Rng::new(seed, index);
    let role = rng.pick(ROLES);
    let (city, state, area) = *rng.pick(CITIES);
    let first = *rng.pick(FIRST_NAMES);
    let last = *rng.pick(LAST_NAMES);

    let mut skills: Vec<String> = Vec::new();
    let wanted = 2 + rng.below(3);
    while skills.len() < wanted.min(role.skills.len()) {
        let skill = rng.pick(role.skills).to_string();
        if !skills.contains(&skill) {
            skills.push(skill);
        }
    }
    let certifications: Vec<String> = role
        .certifications
        .iter()
        .filter(|_| rng.below(100) < 65)
        .map(|c| c.to_string())
        .collect();
    let years_experience = (rng.below(25) as u32).min(rng.below(25) as u32 + 3);
    let cents =
        (role.base_rate * 100.0) as i64 + years_experience as i64 * 25 + rng.below(300) as i64
            - 100;
    let exchange = 200 + rng.below(800);
    let line = rng.below(10_000);
    // Drawn where it always was: the same seed gives the same workers.
    let availability = *rng.pick(AVAILABILITY);
    let shift = *rng.pick(SHIFTS);
    // Up to ~8 miles from the city's centre, drawn last so that the rest
    // of each worker stays what the same seed always gave.
    let offset = |rng: &mut Rng, degrees: f64| (rng.below(2001) as f64 / 1000.0 - 1.0) * degrees;
    let location = crate::domain::geo::city(city, state).map(|centre| {
        let lat = (centre.lat + offset(&mut rng, 0.11)).clamp(-90.0, 90.0);
        let lon = (centre.lon + offset(&mut rng, 0.14)).clamp(-180.0, 180.0);
        crate::domain::geo::Point {
            lat: (lat * 1e5).round() / 1e5,
            lon: (lon * 1e5).round() / 1e5,
        }
    });
    // Drawn after the location, for the same reason: one worker in five
    // has a last day, one in four a few days off within two months.
    let epoch = chrono::NaiveDate::parse_from_str(CORPUS_EPOCH, "%Y-%m-%d").unwrap_or_default();
    let after = |days: usize| (epoch + chrono::Duration::days(days as i64)).to_string();
    let available_to = (rng.below(5) == 0).then(|| after(30 + rng.below(150)));
    let unavailable = if rng.below(4) == 0 {
        let start = 5 + rng.below(55);
        vec![DateRange {
            from: after(start),
            to: after(start + rng.below(7)),
        }]
    } else {
        Vec::new()
    };
    Worker {
        worker_id: format!("W{:07}", index + 1),
        name: format!("{first} {last}"),
        role: role.name.to_string(),
        city: city.to_string(),
        state: state.to_string(),
        skills,
        certifications,
        years_experience,
        hourly_rate: cents as f64 / 100.0,
        availability: availability.to_string(),
        available_from: available_from(availability, index),
        available_to,
        unavailable,
        shift,
        // One phone and one e-mail per worker: distinct workers never
        // look alike (the draws above stay, so the rest of the corpus is
        // as before).
        phone: {
            let _ = (exchange, line);
            format!(
                "{area}-{:03}-{:04}",
                200 + (index / 10_000) % 800,
                index % 10_000
            )
        },
        email: format!(
            "{}.{}.{index}@example.com",
            first.to_lowercase(),
            last.to_lowercase(),
        ),
        location,
    }
}

impl Worker {
    /// The sentence that is embedded for semantic search.
    pub fn profile(&self) -> String {
        let certifications = if self.certifications.is_empty() {
            "no certifications listed".to_string()
        } else {
            self.certifications.join(", ")
        };
        format!(
            "{role} in {city}, {state} with {years} years of experience. Skills: {skills}. \
             Certifications: {certifications}. Available {availability} for {shift} shifts at ${rate:.2}/hr.",
            role = self.role,
            city = self.city,
            state = self.state,
            years = self.years_experience,
            skills = self.skills.join(", "),
            availability = self.availability,
            shift = self.shift.as_str(),
            rate = self.hourly_rate,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_first_workers() {
        let a: Vec<Worker> = (0..10).map(|i| worker(7, i)).collect();
        let b: Vec<Worker> = (0..10).map(|i| worker(7, i)).collect();
        assert_eq!(a, b);
        let other: Vec<Worker> = (0..10).map(|i| worker(8, i)).collect();
        assert_ne!(a, other);
        assert_eq!(a[0].worker_id, "W0000001");
    }

    #[test]
    fn typed_worker_fields_are_checked() {
        let check = |value: serde_json::Value| {
            check_fields(value.as_object().unwrap()).map_err(|(field, _)| field)
        };
        // Every seeded worker passes, and has the new fields now and then.
        let workers: Vec<Worker> = (0..500).map(|i| worker(7, i)).collect();
        for w in &workers {
            check(serde_json::to_value(w).unwrap()).unwrap();
        }
        assert!(workers.iter().any(|w| w.available_to.is_some()));
        assert!(workers.iter().any(|w| !w.unavailable.is_empty()));
        let good = serde_json::json!({
            "shift": "night", "available_to": "2027-03-31", "unavailable": [{"from": "2026-12-24", "to": "2026-12-24"}],
            "certifications": ["OSHA 10", {"name": "CDL Class A", "expires": "2027-01-15"}, {"name": "BLS", "expires": null}],
        });
        assert_eq!(check(good), Ok(()));
        for (bad, field) in [
            (serde_json::json!({"shift": "graveyard"}), "shift"),
            (serde_json::json!({"shift": 3}), "shift"),
            (serde_json::json!({"available_to": "soon"}), "available_to"),
            (
                serde_json::json!({"unavailable": {"from": "2026-12-24"}}),
                "unavailable",
            ),
            (
                serde_json::json!({"unavailable": [{"from": "2026-12-24", "to": "2026-12-23"}]}),
                "unavailable[0]",
            ),
            (
                serde_json::json!({"unavailable": [{"from": "2026-12-24"}]}),
                "unavailable[0]",
            ),
            (
                serde_json::json!({"certifications": [{"name": "CDL", "expires": "soon"}]}),
                "certifications[0]",
            ),
            (
                serde_json::json!({"certifications": ["OSHA 10", {"expires": "2027-01-01"}]}),
                "certifications[1]",
            ),
            (
                serde_json::json!({"certifications": [{"name": "CDL", "by": "DMV"}]}),
                "certifications[0]",
            ),
            (
                serde_json::json!({"certifications": "CDL"}),
                "certifications",
            ),
        ] {
            assert_eq!(check(bad.clone()), Err(field.to_string()), "{bad}");
        }
        let many: Vec<_> = (0..=MAX_UNAVAILABLE_RANGES)
            .map(|_| serde_json::json!({"from": "2026-12-24", "to": "2026-12-24"}))
            .collect();
        assert_eq!(
            check(serde_json::json!({ "unavailable": many })),
            Err("unavailable".to_string())
        );
    }

    #[test]
    fn the_corpus_has_realistic_variety() {
        let workers: Vec<Worker> = (0..5000).map(|i| worker(1, i)).collect();
        let roles: std::collections::HashSet<_> = workers.iter().map(|w| w.role.as_str()).collect();
        let cities: std::collections::HashSet<_> =
            workers.iter().map(|w| w.city.as_str()).collect();
        assert!(roles.len() >= 34, "{} roles", roles.len());
        assert!(ROLES.len() >= 35);
        assert!(cities.len() >= 60);
        for w in &workers[..50] {
            assert!(!w.skills.is_empty());
            assert!(
                w.hourly_rate > 10.0 && w.hourly_rate < 60.0,
                "{}",
                w.hourly_rate
            );
            assert!(crate::domain::validate::find_ssns(&w.phone).is_empty());
            assert!(w.profile().starts_with(&w.role));
        }
    }
}
