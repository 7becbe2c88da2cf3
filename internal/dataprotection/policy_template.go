package dataprotection

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"coffer/internal/schedule"
)

// PolicyTemplate is a client-side policy template: a BackupPolicy with a
// name, as `az dataprotection backup-policy get-default-policy-template`
// prints it. PUT its BackupPolicy as the properties of a policy resource.
type PolicyTemplate struct {
	Name string `json:"name"`
	BackupPolicy
}

// UnmarshalJSON decodes the name and the policy (BackupPolicy's own
// UnmarshalJSON would otherwise drop the name).
func (t *PolicyTemplate) UnmarshalJSON(b []byte) error {
	var head struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return err
	}
	var p BackupPolicy
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*t = PolicyTemplate{Name: head.Name, BackupPolicy: p}
	return nil
}

// DefaultPolicyTemplate returns Azure's default policy template for disks
// (datasource type AzureDisk): backups every 4 hours from
// 2020-04-05T13:00:00+00:00, kept 7 days. Its JSON is the CLI's, key order
// aside (azure-cli-extensions dataprotection Manifests/AzureDisk.py
// defaultPolicy; docs backup-managed-disks-cli.md).
func DefaultPolicyTemplate() PolicyTemplate {
	return PolicyTemplate{
		Name: "DiskPolicy",
		BackupPolicy: BackupPolicy{
			ObjectType:      ObjectTypeBackupPolicy,
			DatasourceTypes: []string{DatasourceTypeDisk},
			PolicyRules: []PolicyRule{
				&AzureBackupRule{
					ObjectType:       ObjectTypeAzureBackupRule,
					Name:             "BackupHourly",
					BackupParameters: &AzureBackupParams{ObjectType: ObjectTypeAzureBackupParams, BackupType: BackupTypeIncremental},
					DataStore:        operationalStore(),
					Trigger: &ScheduleBasedTriggerContext{
						ObjectType: ObjectTypeScheduleBasedTriggerContext,
						Schedule:   BackupSchedule{RepeatingTimeIntervals: []string{"R/2020-04-05T13:00:00+00:00/PT4H"}},
						TaggingCriteria: []TaggingCriteria{
							defaultTag(),
						},
					},
				},
				&AzureRetentionRule{
					ObjectType: ObjectTypeAzureRetentionRule,
					Name:       TagDefault,
					IsDefault:  true,
					Lifecycles: []SourceLifeCycle{{
						DeleteAfter:     &AbsoluteDeleteOption{ObjectType: ObjectTypeAbsoluteDeleteOption, Duration: "P7D"},
						SourceDataStore: operationalStore(),
					}},
				},
			},
		},
	}
}

func operationalStore() DataStoreInfoBase {
	return DataStoreInfoBase{ObjectType: ObjectTypeDataStoreInfoBase, DataStoreType: DataStoreOperational}
}

func defaultTag() TaggingCriteria {
	return TaggingCriteria{
		IsDefault:       true,
		TaggingPriority: defaultTaggingPriority,
		TagInfo:         RetentionTag{TagName: TagDefault, ID: TagDefault + canonicalTagIDSeparator},
	}
}

// DiskPolicyOptions are the simple choices a disk backup policy is built
// from, as the CLI takes them (`coffer policy create --hourly 4 --time 02:00
// --retention 7d --daily-retention 30d --weekly-retention 12w --timezone …`).
type DiskPolicyOptions struct {
	// Hours between backups: 1, 2, 4, 6, 8 or 12; 0 means daily.
	Hours int
	// Time is the start time of day, "HH:MM" or "HH:MM:SS", in TimeZone;
	// empty means 00:00. Hourly backups run every Hours from it.
	Time string
	// Date is the schedule's first day (only its year, month and day are
	// used); the zero Date means 2020-01-01. Nothing is due before it.
	Date time.Time
	// TimeZone is a Windows or IANA time zone name; empty means "UTC".
	TimeZone string
	// Retention of the Default tag (required), and of the optional Daily
	// (first successful backup of the day) and Weekly (of the week) tags:
	// "7d", "12w", "6m", "1y", "4h" or an ISO 8601 duration like "P30D".
	Retention, DailyRetention, WeeklyRetention string
}

// PolicyOption names one of the choices of DiskPolicyOptions.
type PolicyOption string

// The options of DiskPolicyOptions, as a PolicyOptionError names them.
const (
	OptionHours           PolicyOption = "hours"
	OptionTime            PolicyOption = "time"
	OptionTimeZone        PolicyOption = "timeZone"
	OptionRetention       PolicyOption = "retention"
	OptionDailyRetention  PolicyOption = "dailyRetention"
	OptionWeeklyRetention PolicyOption = "weeklyRetention"
)

// PolicyOptionError is a choice BuildDiskPolicy refuses: which option and
// why, so that a form can show the message next to its field. A retention
// over the 1-year/450-backup cap wraps the *resource.Error ValidatePolicy
// would report (UserErrorRetentionDurationExceeded).
type PolicyOptionError struct {
	Option PolicyOption
	Err    error
}

func (e *PolicyOptionError) Error() string { return e.Err.Error() }

func (e *PolicyOptionError) Unwrap() error { return e.Err }

func optionError(o PolicyOption, format string, args ...any) *PolicyOptionError {
	return &PolicyOptionError{Option: o, Err: fmt.Errorf("build disk policy: "+format, args...)}
}

var clockRE = regexp.MustCompile(`^([01]?[0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?$`)

// BuildDiskPolicy builds a disk backup policy shaped as Azure's clients
// build one (rule "BackupIntervals"; tags Default 99, Daily 25, Weekly 20;
// retention rules Default, Daily, Weekly with empty copy settings) and
// validates it with ValidatePolicy. Every refused option is a
// *PolicyOptionError naming it; a retention over the cap wraps
// ValidatePolicy's *resource.Error.
func BuildDiskPolicy(opts DiskPolicyOptions) (BackupPolicy, error) {
	period := "P1D"
	switch opts.Hours {
	case 0:
	case 1, 2, 4, 6, 8, 12:
		period = "PT" + strconv.Itoa(opts.Hours) + "H"
	default:
		return BackupPolicy{}, optionError(OptionHours, "backups every %d hours are not supported (allowed: 1, 2, 4, 6, 8 or 12 hours, or daily)", opts.Hours)
	}
	h, m, s := 0, 0, 0
	if opts.Time != "" {
		sub := clockRE.FindStringSubmatch(opts.Time)
		if sub == nil {
			return BackupPolicy{}, optionError(OptionTime, "time %q is not a time of day such as 02:00 or 14:30", opts.Time)
		}
		h, _ = strconv.Atoi(sub[1])
		m, _ = strconv.Atoi(sub[2])
		if sub[3] != "" {
			s, _ = strconv.Atoi(sub[3])
		}
	}
	tz := opts.TimeZone
	if tz == "" {
		tz = "UTC"
	}
	loc, err := schedule.LoadLocation(tz)
	if err != nil {
		return BackupPolicy{}, optionError(OptionTimeZone, "%w", err)
	}
	y, mo, d := 2020, time.January, 1
	if !opts.Date.IsZero() {
		y, mo, d = opts.Date.Date()
	}
	// Write the zone's offset at that date and time, so that the written
	// instant is also right for readers that ignore timeZone.
	_, off := time.Date(y, mo, d, h, m, s, 0, loc).Zone()
	start := time.Date(y, mo, d, h, m, s, 0, time.FixedZone("", off))
	interval := "R/" + start.Format("2006-01-02T15:04:05-07:00") + "/" + period

	tags := []TaggingCriteria{defaultTag()}
	retention := []PolicyRule{}
	every := 24 * time.Hour
	if opts.Hours > 0 {
		every = time.Duration(opts.Hours) * time.Hour
	}
	add := func(opt PolicyOption, name, value string, priority int64, criterion string) error {
		dur, err := schedule.ParseRetention(value)
		if err != nil {
			return optionError(opt, "%s retention: %w", name, err)
		}
		if e := checkRetentionCap(dur, tagEvery(name, every)); e != nil {
			return &PolicyOptionError{Option: opt, Err: e}
		}
		if criterion != "" {
			tags = append(tags, TaggingCriteria{
				TaggingPriority: priority,
				TagInfo:         RetentionTag{TagName: name, ID: name + canonicalTagIDSeparator},
				Criteria: []ScheduleBasedBackupCriteria{{
					ObjectType:       ObjectTypeScheduleBasedBackupCriteria,
					AbsoluteCriteria: []string{criterion},
				}},
			})
		}
		retention = append(retention, &AzureRetentionRule{
			ObjectType: ObjectTypeAzureRetentionRule,
			Name:       name,
			IsDefault:  criterion == "",
			Lifecycles: []SourceLifeCycle{{
				DeleteAfter:                 &AbsoluteDeleteOption{ObjectType: ObjectTypeAbsoluteDeleteOption, Duration: dur.String()},
				SourceDataStore:             operationalStore(),
				TargetDataStoreCopySettings: &[]TargetCopySetting{},
			}},
		})
		return nil
	}
	if opts.Retention == "" {
		return BackupPolicy{}, optionError(OptionRetention, "the default retention is required (for example 7d)")
	}
	if err := add(OptionRetention, TagDefault, opts.Retention, defaultTaggingPriority, ""); err != nil {
		return BackupPolicy{}, err
	}
	if opts.DailyRetention != "" {
		if err := add(OptionDailyRetention, TagDaily, opts.DailyRetention, dailyTaggingPriority, AbsoluteFirstOfDay); err != nil {
			return BackupPolicy{}, err
		}
	}
	if opts.WeeklyRetention != "" {
		if err := add(OptionWeeklyRetention, TagWeekly, opts.WeeklyRetention, weeklyTaggingPriority, AbsoluteFirstOfWeek); err != nil {
			return BackupPolicy{}, err
		}
	}

	p := BackupPolicy{
		ObjectType:      ObjectTypeBackupPolicy,
		DatasourceTypes: []string{DatasourceTypeDisk},
		PolicyRules: append([]PolicyRule{&AzureBackupRule{
			ObjectType:       ObjectTypeAzureBackupRule,
			Name:             "BackupIntervals",
			BackupParameters: &AzureBackupParams{ObjectType: ObjectTypeAzureBackupParams, BackupType: BackupTypeIncremental},
			DataStore:        operationalStore(),
			Trigger: &ScheduleBasedTriggerContext{
				ObjectType:      ObjectTypeScheduleBasedTriggerContext,
				Schedule:        BackupSchedule{RepeatingTimeIntervals: []string{interval}, TimeZone: tz},
				TaggingCriteria: tags,
			},
		}}, retention...),
	}
	if err := ValidatePolicy(p); err != nil {
		return BackupPolicy{}, err
	}
	return p, nil
}
