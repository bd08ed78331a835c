//! The fields usage aggregates are counted and grouped by (docs/API.md, Usage): the
//! status classes a gateway counts responses in, and the groupings a token's usage is
//! read in. Their names are wire values; these types keep them in one place.

/// The status classes a usage entry may name, one per first digit of an HTTP status.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// True when `text` is one of [`STATUS_CLASSES`].
pub fn is_status_class(text: &str) -> bool {
    STATUS_CLASSES.contains(&text)
}

/// What a token's usage is grouped by when read (`group_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsageGroup {
    /// The gateway route.
    Route,
    /// The client address.
    Ip,
    /// The status class.
    Status,
    /// The HTTP method.
    Method,
    /// The UTC day, with one series point per day.
    Day,
    /// The client address's country, by the server's GeoIP database (`unknown` without
    /// one, or for an address it does not know).
    Country,
}

impl UsageGroup {
    /// Every grouping, in the order the API documents them.
    pub const ALL: [UsageGroup; 6] = [
        Self::Route,
        Self::Ip,
        Self::Status,
        Self::Method,
        Self::Day,
        Self::Country,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Route => "route",
            Self::Ip => "ip",
            Self::Status => "status",
            Self::Method => "method",
            Self::Day => "day",
            Self::Country => "country",
        }
    }

    /// The grouping named `text`, exactly.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|group| group.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grouping_round_trips_and_nothing_else_parses() {
        let names: Vec<&str> = UsageGroup::ALL.iter().map(|g| g.as_str()).collect();
        assert_eq!(names, ["route", "ip", "status", "method", "day", "country"]);
        for group in UsageGroup::ALL {
            assert_eq!(UsageGroup::parse(group.as_str()), Some(group));
        }
        for bad in ["colour", "Route", "route ", ""] {
            assert_eq!(UsageGroup::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn status_classes_are_the_five_first_digits_only() {
        for class in STATUS_CLASSES {
            assert!(is_status_class(class));
        }
        for bad in ["0xx", "6xx", "2XX", "200", "2xx ", ""] {
            assert!(!is_status_class(bad), "{bad:?}");
        }
    }
}
