package dataprotection

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"coffer/internal/resource"
	"coffer/internal/schedule"
)

// Discriminator values (objectType) of the backup policy model, in the
// casing Azure emits. Input is matched case-insensitively.
const (
	ObjectTypeBackupPolicy                = "BackupPolicy"
	ObjectTypeAzureBackupRule             = "AzureBackupRule"
	ObjectTypeAzureRetentionRule          = "AzureRetentionRule"
	ObjectTypeAzureBackupParams           = "AzureBackupParams"
	ObjectTypeDataStoreInfoBase           = "DataStoreInfoBase"
	ObjectTypeScheduleBasedTriggerContext = "ScheduleBasedTriggerContext"
	ObjectTypeScheduleBasedBackupCriteria = "ScheduleBasedBackupCriteria"
	ObjectTypeAbsoluteDeleteOption        = "AbsoluteDeleteOption"
)

// Values of disk backup policies.
const (
	DatasourceTypeDisk      = "Microsoft.Compute/disks"
	DataStoreOperational    = "OperationalStore"
	BackupTypeIncremental   = "Incremental"
	PolicyResourceType      = "Microsoft.DataProtection/backupVaults/backupPolicies"
	TagDefault              = "Default"
	TagDaily                = "Daily"
	TagWeekly               = "Weekly"
	AbsoluteFirstOfDay      = "FirstOfDay"
	AbsoluteFirstOfWeek     = "FirstOfWeek"
	defaultTaggingPriority  = 99
	dailyTaggingPriority    = 25
	weeklyTaggingPriority   = 20
	canonicalTagIDSeparator = "_"
)

// BaseBackupPolicyResource is a backup policy as a resource: the body of
// PUT/GET …/backupVaults/{vault}/backupPolicies/{name}.
type BaseBackupPolicyResource struct {
	ID   string `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
	Type string `json:"type,omitempty"`
	// SystemData is ARM's systemData, kept opaque here.
	SystemData json.RawMessage `json:"systemData,omitempty"`
	Properties BackupPolicy    `json:"properties"`
}

// BackupPolicy is the policy (objectType "BackupPolicy", the only
// BaseBackupPolicy kind).
type BackupPolicy struct {
	ObjectType      string       `json:"objectType"`
	DatasourceTypes []string     `json:"datasourceTypes"`
	PolicyRules     []PolicyRule `json:"policyRules"`
}

// PolicyRule is one element of policyRules: *AzureBackupRule,
// *AzureRetentionRule, or *UnknownRule for any other objectType.
type PolicyRule interface {
	// RuleName returns the rule's name.
	RuleName() string
	// RuleObjectType returns the rule's objectType.
	RuleObjectType() string
}

// AzureBackupRule says when and how backups are taken.
type AzureBackupRule struct {
	ObjectType       string                       `json:"objectType"`
	Name             string                       `json:"name"`
	BackupParameters *AzureBackupParams           `json:"backupParameters,omitempty"`
	DataStore        DataStoreInfoBase            `json:"dataStore"`
	Trigger          *ScheduleBasedTriggerContext `json:"trigger,omitempty"`
}

// AzureBackupParams are a backup rule's parameters.
type AzureBackupParams struct {
	ObjectType string `json:"objectType"`
	BackupType string `json:"backupType"`
}

// DataStoreInfoBase names a data store.
type DataStoreInfoBase struct {
	ObjectType    string `json:"objectType"`
	DataStoreType string `json:"dataStoreType"`
}

// ScheduleBasedTriggerContext is a backup rule's schedule and tagging
// criteria. A trigger of another objectType (AdhocBasedTriggerContext)
// decodes with only ObjectType set.
type ScheduleBasedTriggerContext struct {
	ObjectType      string            `json:"objectType"`
	Schedule        BackupSchedule    `json:"schedule"`
	TaggingCriteria []TaggingCriteria `json:"taggingCriteria"`
}

// BackupSchedule is when backups start.
type BackupSchedule struct {
	RepeatingTimeIntervals []string `json:"repeatingTimeIntervals"`
	TimeZone               string   `json:"timeZone,omitempty"`
}

// TaggingCriteria decides which backups get a retention tag.
type TaggingCriteria struct {
	IsDefault       bool                          `json:"isDefault"`
	TaggingPriority int64                         `json:"taggingPriority"`
	TagInfo         RetentionTag                  `json:"tagInfo"`
	Criteria        []ScheduleBasedBackupCriteria `json:"criteria,omitempty"`
}

// RetentionTag names a tag; the service sets ID to "<tagName>_".
type RetentionTag struct {
	TagName string `json:"tagName"`
	ID      string `json:"id,omitempty"`
	ETag    string `json:"eTag,omitempty"`
}

// ScheduleBasedBackupCriteria is one tagging criterion. Disks use only
// absoluteCriteria FirstOfDay or FirstOfWeek.
type ScheduleBasedBackupCriteria struct {
	ObjectType       string       `json:"objectType"`
	AbsoluteCriteria []string     `json:"absoluteCriteria,omitempty"`
	DaysOfMonth      []DayOfMonth `json:"daysOfMonth,omitempty"`
	DaysOfTheWeek    []string     `json:"daysOfTheWeek,omitempty"`
	MonthsOfYear     []string     `json:"monthsOfYear,omitempty"`
	ScheduleTimes    []string     `json:"scheduleTimes,omitempty"`
	WeeksOfTheMonth  []string     `json:"weeksOfTheMonth,omitempty"`
}

// DayOfMonth is a day of a month in a criterion.
type DayOfMonth struct {
	Date   int  `json:"date,omitempty"`
	IsLast bool `json:"isLast,omitempty"`
}

// AzureRetentionRule says how long backups with one tag are kept.
type AzureRetentionRule struct {
	ObjectType string            `json:"objectType"`
	Name       string            `json:"name"`
	IsDefault  bool              `json:"isDefault"`
	Lifecycles []SourceLifeCycle `json:"lifecycles"`
}

// SourceLifeCycle is a retention rule's life cycle in one data store.
type SourceLifeCycle struct {
	DeleteAfter     *AbsoluteDeleteOption `json:"deleteAfter,omitempty"`
	SourceDataStore DataStoreInfoBase     `json:"sourceDataStore"`
	// TargetDataStoreCopySettings must be empty for disks; nil is omitted
	// and an empty slice is written as [] (both appear on the wire).
	TargetDataStoreCopySettings *[]TargetCopySetting `json:"targetDataStoreCopySettings,omitempty"`
}

// TargetCopySetting copies backups to another data store (not for disks).
type TargetCopySetting struct {
	CopyAfter json.RawMessage   `json:"copyAfter,omitempty"`
	DataStore DataStoreInfoBase `json:"dataStore"`
}

// AbsoluteDeleteOption deletes backups a duration after they are taken.
type AbsoluteDeleteOption struct {
	ObjectType string `json:"objectType"`
	Duration   string `json:"duration"`
}

// UnknownRule is a policy rule whose objectType is neither AzureBackupRule
// nor AzureRetentionRule; it is kept as it came so that validation can
// report it.
type UnknownRule struct {
	ObjectType string
	Name       string
	Raw        json.RawMessage
}

// RuleName implements PolicyRule.
func (r *AzureBackupRule) RuleName() string { return r.Name }

// RuleObjectType implements PolicyRule.
func (r *AzureBackupRule) RuleObjectType() string { return ObjectTypeAzureBackupRule }

// RuleName implements PolicyRule.
func (r *AzureRetentionRule) RuleName() string { return r.Name }

// RuleObjectType implements PolicyRule.
func (r *AzureRetentionRule) RuleObjectType() string { return ObjectTypeAzureRetentionRule }

// RuleName implements PolicyRule.
func (r *UnknownRule) RuleName() string { return r.Name }

// RuleObjectType implements PolicyRule.
func (r *UnknownRule) RuleObjectType() string { return r.ObjectType }

// MarshalJSON writes the rule as it came.
func (r *UnknownRule) MarshalJSON() ([]byte, error) {
	if len(r.Raw) == 0 {
		return []byte("null"), nil
	}
	return r.Raw, nil
}

// canonical returns want when got matches it case-insensitively or is
// empty, and got otherwise (an unknown objectType is kept for validation
// to report).
func canonical(got, want string) string {
	if got == "" || strings.EqualFold(got, want) {
		return want
	}
	return got
}

// UnmarshalJSON decodes policyRules by each rule's objectType
// (case-insensitively) and canonicalises every objectType's casing.
func (p *BackupPolicy) UnmarshalJSON(b []byte) error {
	var wire struct {
		ObjectType      string            `json:"objectType"`
		DatasourceTypes []string          `json:"datasourceTypes"`
		PolicyRules     []json.RawMessage `json:"policyRules"`
	}
	if err := json.Unmarshal(b, &wire); err != nil {
		return err
	}
	out := BackupPolicy{
		ObjectType:      canonicalNonEmpty(wire.ObjectType, ObjectTypeBackupPolicy),
		DatasourceTypes: wire.DatasourceTypes,
	}
	if wire.PolicyRules != nil {
		out.PolicyRules = make([]PolicyRule, 0, len(wire.PolicyRules))
	}
	for i, raw := range wire.PolicyRules {
		rule, err := decodeRule(raw)
		if err != nil {
			return &RuleDecodeError{Index: i, Err: err}
		}
		out.PolicyRules = append(out.PolicyRules, rule)
	}
	*p = out
	return nil
}

// RuleDecodeError is a policy rule that does not decode: the JSON error of
// policyRules[Index].
type RuleDecodeError struct {
	Index int
	Err   error
}

func (e *RuleDecodeError) Error() string { return fmt.Sprintf("policyRules[%d]: %v", e.Index, e.Err) }

func (e *RuleDecodeError) Unwrap() error { return e.Err }

// canonicalNonEmpty is canonical but keeps an empty value empty, so that a
// missing discriminator can be reported.
func canonicalNonEmpty(got, want string) string {
	if got == "" {
		return ""
	}
	return canonical(got, want)
}

func decodeRule(raw json.RawMessage) (PolicyRule, error) {
	var head struct {
		ObjectType string `json:"objectType"`
		Name       string `json:"name"`
	}
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return &UnknownRule{Raw: raw}, nil
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, err
	}
	switch {
	case strings.EqualFold(head.ObjectType, ObjectTypeAzureBackupRule):
		var r AzureBackupRule
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, err
		}
		r.canonicalize()
		return &r, nil
	case strings.EqualFold(head.ObjectType, ObjectTypeAzureRetentionRule):
		var r AzureRetentionRule
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, err
		}
		r.canonicalize()
		return &r, nil
	}
	return &UnknownRule{ObjectType: head.ObjectType, Name: head.Name, Raw: append(json.RawMessage(nil), raw...)}, nil
}

func (r *AzureBackupRule) canonicalize() {
	r.ObjectType = ObjectTypeAzureBackupRule
	if r.BackupParameters != nil {
		r.BackupParameters.ObjectType = canonical(r.BackupParameters.ObjectType, ObjectTypeAzureBackupParams)
	}
	r.DataStore.canonicalize()
	if t := r.Trigger; t != nil {
		t.ObjectType = canonical(t.ObjectType, ObjectTypeScheduleBasedTriggerContext)
		for i := range t.TaggingCriteria {
			for j := range t.TaggingCriteria[i].Criteria {
				c := &t.TaggingCriteria[i].Criteria[j]
				c.ObjectType = canonical(c.ObjectType, ObjectTypeScheduleBasedBackupCriteria)
			}
		}
	}
}

func (r *AzureRetentionRule) canonicalize() {
	r.ObjectType = ObjectTypeAzureRetentionRule
	for i := range r.Lifecycles {
		lc := &r.Lifecycles[i]
		if lc.DeleteAfter != nil {
			lc.DeleteAfter.ObjectType = canonical(lc.DeleteAfter.ObjectType, ObjectTypeAbsoluteDeleteOption)
		}
		lc.SourceDataStore.canonicalize()
		if lc.TargetDataStoreCopySettings != nil {
			for j := range *lc.TargetDataStoreCopySettings {
				(*lc.TargetDataStoreCopySettings)[j].DataStore.canonicalize()
			}
		}
	}
}

func (d *DataStoreInfoBase) canonicalize() {
	d.ObjectType = canonical(d.ObjectType, ObjectTypeDataStoreInfoBase)
}

// UnmarshalJSON decodes a trigger; one of another kind keeps only its
// objectType, so that validation reports it instead of a type error.
func (t *ScheduleBasedTriggerContext) UnmarshalJSON(b []byte) error {
	var head struct {
		ObjectType string `json:"objectType"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return err
	}
	if head.ObjectType != "" && !strings.EqualFold(head.ObjectType, ObjectTypeScheduleBasedTriggerContext) {
		*t = ScheduleBasedTriggerContext{ObjectType: head.ObjectType}
		return nil
	}
	type plain ScheduleBasedTriggerContext
	var v plain
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*t = ScheduleBasedTriggerContext(v)
	return nil
}

// BackupRule returns the policy's first AzureBackupRule and its index, or
// nil and -1.
func (p *BackupPolicy) BackupRule() (*AzureBackupRule, int) {
	for i, r := range p.PolicyRules {
		if br, ok := r.(*AzureBackupRule); ok {
			return br, i
		}
	}
	return nil, -1
}

// RetentionRules returns the policy's AzureRetentionRules.
func (p *BackupPolicy) RetentionRules() []*AzureRetentionRule {
	var out []*AzureRetentionRule
	for _, r := range p.PolicyRules {
		if rr, ok := r.(*AzureRetentionRule); ok {
			out = append(out, rr)
		}
	}
	return out
}

// Normalize fills in what the service adds to a stored policy: the tag IDs
// ("<tagName>_") and canonical objectType casing.
func (p *BackupPolicy) Normalize() {
	p.ObjectType = canonical(p.ObjectType, ObjectTypeBackupPolicy)
	for _, r := range p.PolicyRules {
		switch r := r.(type) {
		case *AzureBackupRule:
			r.canonicalize()
			if r.Trigger != nil {
				for i := range r.Trigger.TaggingCriteria {
					ti := &r.Trigger.TaggingCriteria[i].TagInfo
					ti.ID = ti.TagName + canonicalTagIDSeparator
				}
			}
		case *AzureRetentionRule:
			r.canonicalize()
		}
	}
}

// Error codes of policy validation. Azure's Microsoft.DataProtection answers
// an invalid policy PUT with HTTP 400 and code BMSUserErrorInvalidInput
// ("Input provided for the call is invalid.", seen in the wild for invalid
// blob, AKS and disk policies: hashicorp/terraform-provider-azurerm#33493,
// crossplane-contrib/provider-upjet-azure#853) and does not document finer
// codes. Coffer uses that code for structural errors and the Coffer-defined
// codes below (all HTTP 400, marked "Coffer") where a specific code helps
// the caller; every message says what is wrong and what is allowed.
const (
	// CodeInvalidInput is Azure's code for an invalid policy (Azure).
	CodeInvalidInput = "BMSUserErrorInvalidInput"
	// CodeInvalidRepeatingTimeInterval: a repeatingTimeIntervals entry is
	// not "R/<date-time with offset>/<period>" (Coffer).
	CodeInvalidRepeatingTimeInterval = "UserErrorInvalidRepeatingTimeInterval"
	// CodeUnsupportedBackupFrequency: the period is not PT1H, PT2H, PT4H,
	// PT6H, PT8H, PT12H or P1D (Coffer).
	CodeUnsupportedBackupFrequency = "UserErrorUnsupportedBackupFrequency"
	// CodeInvalidTimeZone: the schedule's timeZone is not a known Windows
	// or IANA time zone (Coffer).
	CodeInvalidTimeZone = "UserErrorInvalidTimeZone"
	// CodeInvalidRetentionDuration: a deleteAfter duration is not a
	// positive ISO 8601 duration (Coffer).
	CodeInvalidRetentionDuration = "UserErrorInvalidRetentionDuration"
	// CodeRetentionDurationExceeded: a retention is longer than 1 year or
	// 450 backups at the schedule's frequency (Coffer).
	CodeRetentionDurationExceeded = "UserErrorRetentionDurationExceeded"
	// CodeBackupFrequencyNotSupportedForDiskSKU: a Premium SSD v2 or Ultra
	// disk with a policy more frequent than every 12 hours (Coffer).
	CodeBackupFrequencyNotSupportedForDiskSKU = "UserErrorBackupFrequencyNotSupportedForDiskSku"
)

// Disk SKUs that allow only 12-hourly or daily backups.
const (
	SKUPremiumV2LRS = "PremiumV2_LRS"
	SKUUltraSSDLRS  = "UltraSSD_LRS"
)

// validation collects the errors of one policy.
type validation struct {
	errs []*resource.Error
}

func (v *validation) add(code, target, format string, args ...any) {
	v.errs = append(v.errs, resource.Errorf(resource.KindBadRequest, code, format, args...).WithTarget(target))
}

// err returns nil, the one error, or the first error with the others as
// its details.
func (v *validation) err() error {
	switch len(v.errs) {
	case 0:
		return nil
	case 1:
		return v.errs[0]
	}
	first := *v.errs[0]
	first.Details = append([]*resource.Error(nil), v.errs[1:]...)
	return &first
}

// tagInfo is what the backup rule says about one tag.
type tagInfo struct {
	name   string
	index  int // in taggingCriteria
	target string
}

// ValidatePolicy checks a backup policy for Microsoft.Compute/disks as Azure
// Backup for Managed Disks does, and returns nil or a *resource.Error (Kind
// BadRequest) whose Target is the JSON path of the first offending value,
// such as properties.policyRules[0].trigger.schedule.repeatingTimeIntervals[0];
// further errors are in its Details.
//
// The rules: objectType BackupPolicy; datasourceTypes exactly
// ["Microsoft.Compute/disks"]; exactly one AzureBackupRule with dataStore
// OperationalStore, backupType Incremental and a ScheduleBasedTriggerContext
// with one repeating interval (PT1H, PT2H, PT4H, PT6H, PT8H, PT12H or P1D)
// and a known timeZone; tagging criteria: exactly one default tag named
// Default (no criteria), and optionally Daily with absolute criterion
// FirstOfDay and Weekly with FirstOfWeek, with distinct priorities (any
// numbers; lower wins); exactly one retention rule per tag, the Default one
// with isDefault true and mandatory; each with one OperationalStore life
// cycle whose deleteAfter is a positive AbsoluteDeleteOption and no copy
// settings. Retention is at most 1 year, and the Default rule's at most 450
// backups at the schedule's frequency (Daily and Weekly keep one backup a
// day or a week, so only the year binds them): 12-hourly 225 days, 4-hourly
// 75 days, hourly 18.75 days (P18DT18H), daily 365 days.
func ValidatePolicy(p BackupPolicy) error {
	v := &validation{}
	switch {
	case p.ObjectType == "":
		v.add(CodeInvalidInput, "properties.objectType", "objectType is required; it must be %q.", ObjectTypeBackupPolicy)
	case !strings.EqualFold(p.ObjectType, ObjectTypeBackupPolicy):
		v.add(CodeInvalidInput, "properties.objectType", "objectType %q is not supported; it must be %q.", p.ObjectType, ObjectTypeBackupPolicy)
	}
	switch {
	case len(p.DatasourceTypes) != 1:
		v.add(CodeInvalidInput, "properties.datasourceTypes", "datasourceTypes must be exactly [%q]; got %d entries.", DatasourceTypeDisk, len(p.DatasourceTypes))
	case !strings.EqualFold(p.DatasourceTypes[0], DatasourceTypeDisk):
		v.add(CodeInvalidInput, "properties.datasourceTypes[0]", "datasource type %q is not supported; this service backs up only %q.", p.DatasourceTypes[0], DatasourceTypeDisk)
	}
	if len(p.PolicyRules) == 0 {
		v.add(CodeInvalidInput, "properties.policyRules", "policyRules is required: a disk backup policy needs one AzureBackupRule and a Default AzureRetentionRule.")
		return v.err()
	}

	backupIdx := -1
	for i, r := range p.PolicyRules {
		switch r := r.(type) {
		case *AzureBackupRule:
			if r == nil {
				continue
			}
			if backupIdx >= 0 {
				v.add(CodeInvalidInput, fmt.Sprintf("properties.policyRules[%d]", i), "a disk backup policy must have exactly one AzureBackupRule; rule %q is another one (the first is %q).", r.Name, p.PolicyRules[backupIdx].RuleName())
				continue
			}
			backupIdx = i
		case *AzureRetentionRule:
		case *UnknownRule:
			if r.ObjectType == "" {
				v.add(CodeInvalidInput, fmt.Sprintf("properties.policyRules[%d].objectType", i), "objectType is required; it must be %q or %q.", ObjectTypeAzureBackupRule, ObjectTypeAzureRetentionRule)
			} else {
				v.add(CodeInvalidInput, fmt.Sprintf("properties.policyRules[%d].objectType", i), "policy rule objectType %q is not supported; it must be %q or %q.", r.ObjectType, ObjectTypeAzureBackupRule, ObjectTypeAzureRetentionRule)
			}
		default:
			v.add(CodeInvalidInput, fmt.Sprintf("properties.policyRules[%d]", i), "policy rule must be an AzureBackupRule or an AzureRetentionRule.")
		}
	}

	var every time.Duration // 0 when the schedule is unknown
	var tags []tagInfo
	if backupIdx < 0 {
		v.add(CodeInvalidInput, "properties.policyRules", "a disk backup policy needs exactly one AzureBackupRule (with the schedule); found none.")
	} else {
		every, tags = validateBackupRule(v, p.PolicyRules[backupIdx].(*AzureBackupRule), fmt.Sprintf("properties.policyRules[%d]", backupIdx))
	}
	validateRetentionRules(v, p, every, tags, backupIdx >= 0)
	return v.err()
}

// validateBackupRule checks the backup rule at prefix and returns its
// period (0 if invalid) and its tags (nil if the trigger is unusable).
func validateBackupRule(v *validation, r *AzureBackupRule, prefix string) (time.Duration, []tagInfo) {
	if r.Name == "" {
		v.add(CodeInvalidInput, prefix+".name", "name is required for the AzureBackupRule (for example \"BackupHourly\").")
	}
	validateDataStore(v, r.DataStore, prefix+".dataStore")
	switch bp := r.BackupParameters; {
	case bp == nil:
		v.add(CodeInvalidInput, prefix+".backupParameters", "backupParameters is required: {\"objectType\": %q, \"backupType\": %q}.", ObjectTypeAzureBackupParams, BackupTypeIncremental)
	case !strings.EqualFold(bp.ObjectType, ObjectTypeAzureBackupParams):
		v.add(CodeInvalidInput, prefix+".backupParameters.objectType", "backupParameters objectType %q is not supported; it must be %q.", bp.ObjectType, ObjectTypeAzureBackupParams)
	case bp.BackupType == "":
		v.add(CodeInvalidInput, prefix+".backupParameters.backupType", "backupType is required; disks support only %q.", BackupTypeIncremental)
	case !strings.EqualFold(bp.BackupType, BackupTypeIncremental):
		v.add(CodeInvalidInput, prefix+".backupParameters.backupType", "backupType %q is not supported for disks; only %q is allowed.", bp.BackupType, BackupTypeIncremental)
	}
	t := r.Trigger
	switch {
	case t == nil:
		v.add(CodeInvalidInput, prefix+".trigger", "trigger is required: a %s with the schedule and tagging criteria.", ObjectTypeScheduleBasedTriggerContext)
		return 0, nil
	case !strings.EqualFold(t.ObjectType, ObjectTypeScheduleBasedTriggerContext):
		v.add(CodeInvalidInput, prefix+".trigger.objectType", "trigger objectType %q is not supported for disks; it must be %q.", t.ObjectType, ObjectTypeScheduleBasedTriggerContext)
		return 0, nil
	}
	every := validateSchedule(v, t.Schedule, prefix+".trigger.schedule")
	return every, validateTagging(v, t.TaggingCriteria, prefix+".trigger.taggingCriteria")
}

func validateDataStore(v *validation, d DataStoreInfoBase, prefix string) {
	switch {
	case d.DataStoreType == "":
		v.add(CodeInvalidInput, prefix+".dataStoreType", "dataStoreType is required; disk backups support only %q.", DataStoreOperational)
	case !strings.EqualFold(d.DataStoreType, DataStoreOperational):
		v.add(CodeInvalidInput, prefix+".dataStoreType", "dataStoreType %q is not supported for disks; only %q is allowed (disk backups are snapshots in the operational tier).", d.DataStoreType, DataStoreOperational)
	case !strings.EqualFold(d.ObjectType, ObjectTypeDataStoreInfoBase):
		v.add(CodeInvalidInput, prefix+".objectType", "objectType %q is not supported; it must be %q.", d.ObjectType, ObjectTypeDataStoreInfoBase)
	}
}

func validateSchedule(v *validation, s BackupSchedule, prefix string) time.Duration {
	var every time.Duration
	if len(s.RepeatingTimeIntervals) != 1 {
		v.add(CodeInvalidRepeatingTimeInterval, prefix+".repeatingTimeIntervals", "repeatingTimeIntervals must have exactly one entry, such as \"R/2020-04-05T13:00:00+00:00/PT4H\"; got %d.", len(s.RepeatingTimeIntervals))
	} else {
		iv, err := schedule.ParseInterval(s.RepeatingTimeIntervals[0])
		switch {
		case errors.Is(err, schedule.ErrUnsupportedFrequency):
			v.add(CodeUnsupportedBackupFrequency, prefix+".repeatingTimeIntervals[0]", "%s.", err)
		case err != nil:
			v.add(CodeInvalidRepeatingTimeInterval, prefix+".repeatingTimeIntervals[0]", "%s.", err)
		default:
			every = iv.Every
		}
	}
	if s.TimeZone != "" {
		if _, err := schedule.LoadLocation(s.TimeZone); err != nil {
			v.add(CodeInvalidTimeZone, prefix+".timeZone", "%s.", err)
		}
	}
	return every
}

// criterionFor maps the tags disks allow to their absolute criterion.
var criterionFor = map[string]string{
	strings.ToLower(TagDaily):  AbsoluteFirstOfDay,
	strings.ToLower(TagWeekly): AbsoluteFirstOfWeek,
}

func validateTagging(v *validation, tcs []TaggingCriteria, prefix string) []tagInfo {
	if len(tcs) == 0 {
		v.add(CodeInvalidInput, prefix, "taggingCriteria is required and must contain the default tag {\"isDefault\": true, \"tagInfo\": {\"tagName\": %q}, \"taggingPriority\": %d}.", TagDefault, defaultTaggingPriority)
		return nil
	}
	var tags []tagInfo
	defaults := 0
	priorities := map[int64]string{}
	for j, tc := range tcs {
		tp := fmt.Sprintf("%s[%d]", prefix, j)
		name := tc.TagInfo.TagName
		if name == "" {
			v.add(CodeInvalidInput, tp+".tagInfo.tagName", "tagName is required (%q, %q or %q).", TagDefault, TagDaily, TagWeekly)
			continue
		}
		dup := false
		for _, t := range tags {
			if strings.EqualFold(t.name, name) {
				v.add(CodeInvalidInput, tp+".tagInfo.tagName", "tag %q appears more than once in taggingCriteria.", name)
				dup = true
			}
		}
		if dup {
			continue
		}
		tags = append(tags, tagInfo{name: name, index: j, target: tp})
		if tc.IsDefault {
			defaults++
			switch {
			case defaults > 1:
				v.add(CodeInvalidInput, tp+".isDefault", "only one tag may have isDefault true; tag %q is a second default.", name)
			case !strings.EqualFold(name, TagDefault):
				v.add(CodeInvalidInput, tp+".tagInfo.tagName", "the default tag (isDefault true) must be named %q; got %q.", TagDefault, name)
			case len(tc.Criteria) > 0:
				v.add(CodeInvalidInput, tp+".criteria", "the %q tag must not have criteria: it applies to every backup no other tag matches.", TagDefault)
			}
			continue
		}
		if strings.EqualFold(name, TagDefault) {
			v.add(CodeInvalidInput, tp+".isDefault", "tag %q must have isDefault true.", TagDefault)
			continue
		}
		want, ok := criterionFor[strings.ToLower(name)]
		if !ok {
			v.add(CodeInvalidInput, tp+".tagInfo.tagName", "tag %q is not supported for disks; besides %q only %q (first successful backup of the day) and %q (first successful backup of the week) are allowed.", name, TagDefault, TagDaily, TagWeekly)
			continue
		}
		if tc.TaggingPriority < 0 {
			v.add(CodeInvalidInput, tp+".taggingPriority", "taggingPriority %d of tag %q must not be negative.", tc.TaggingPriority, name)
		} else if other, seen := priorities[tc.TaggingPriority]; seen {
			v.add(CodeInvalidInput, tp+".taggingPriority", "tags %q and %q have the same taggingPriority %d; they must differ, since the lower number wins when a backup is the first of both its day and its week (the CLI uses Weekly 20, Daily 25).", other, name, tc.TaggingPriority)
		} else {
			priorities[tc.TaggingPriority] = name
		}
		validateCriteria(v, tc.Criteria, name, want, tp+".criteria")
	}
	if defaults == 0 {
		v.add(CodeInvalidInput, prefix, "taggingCriteria must contain the default tag {\"isDefault\": true, \"tagInfo\": {\"tagName\": %q}, \"taggingPriority\": %d}.", TagDefault, defaultTaggingPriority)
	}
	return tags
}

func validateCriteria(v *validation, cs []ScheduleBasedBackupCriteria, tag, want, prefix string) {
	example := fmt.Sprintf("[{\"objectType\": %q, \"absoluteCriteria\": [%q]}]", ObjectTypeScheduleBasedBackupCriteria, want)
	if len(cs) != 1 {
		v.add(CodeInvalidInput, prefix, "tag %q needs exactly one criterion, %s; got %d.", tag, example, len(cs))
		return
	}
	c := cs[0]
	switch {
	case !strings.EqualFold(c.ObjectType, ObjectTypeScheduleBasedBackupCriteria):
		v.add(CodeInvalidInput, prefix+"[0].objectType", "criterion objectType %q is not supported; it must be %q.", c.ObjectType, ObjectTypeScheduleBasedBackupCriteria)
	case len(c.DaysOfMonth) > 0 || len(c.DaysOfTheWeek) > 0 || len(c.MonthsOfYear) > 0 || len(c.ScheduleTimes) > 0 || len(c.WeeksOfTheMonth) > 0:
		v.add(CodeInvalidInput, prefix+"[0]", "disk backup tags support only absoluteCriteria; remove daysOfMonth, daysOfTheWeek, monthsOfYear, scheduleTimes and weeksOfTheMonth from tag %q (use %s).", tag, example)
	case len(c.AbsoluteCriteria) != 1:
		v.add(CodeInvalidInput, prefix+"[0].absoluteCriteria", "tag %q needs exactly one absolute criterion, [%q]; got %d.", tag, want, len(c.AbsoluteCriteria))
	case !strings.EqualFold(c.AbsoluteCriteria[0], want):
		v.add(CodeInvalidInput, prefix+"[0].absoluteCriteria[0]", "tag %q must use absolute criterion %q; got %q (disks support %q for tag %q and %q for tag %q).",
			tag, want, c.AbsoluteCriteria[0], AbsoluteFirstOfDay, TagDaily, AbsoluteFirstOfWeek, TagWeekly)
	}
}

// validateRetentionRules checks the retention rules, and that they and the
// tags correspond one to one when the tags are known (haveBackupRule).
func validateRetentionRules(v *validation, p BackupPolicy, every time.Duration, tags []tagInfo, haveBackupRule bool) {
	var names []string
	defaults := 0
	for i, r := range p.PolicyRules {
		rr, ok := r.(*AzureRetentionRule)
		if !ok || rr == nil {
			continue
		}
		rp := fmt.Sprintf("properties.policyRules[%d]", i)
		if rr.Name == "" {
			v.add(CodeInvalidInput, rp+".name", "name is required for an AzureRetentionRule; it must match a tag (%q, %q or %q).", TagDefault, TagDaily, TagWeekly)
		} else {
			dup := false
			for _, n := range names {
				dup = dup || strings.EqualFold(n, rr.Name)
			}
			if dup {
				v.add(CodeInvalidInput, rp+".name", "retention rule %q appears more than once.", rr.Name)
			}
			names = append(names, rr.Name)
			switch {
			case rr.IsDefault && !strings.EqualFold(rr.Name, TagDefault):
				v.add(CodeInvalidInput, rp+".name", "the default retention rule (isDefault true) must be named %q; got %q.", TagDefault, rr.Name)
			case !rr.IsDefault && strings.EqualFold(rr.Name, TagDefault):
				v.add(CodeInvalidInput, rp+".isDefault", "retention rule %q must have isDefault true.", TagDefault)
			case haveBackupRule && tags != nil && !dup && findTag(tags, rr.Name) == nil:
				v.add(CodeInvalidInput, rp+".name", "retention rule %q has no tag in the backup rule's taggingCriteria; add tag %q there or remove this rule.", rr.Name, rr.Name)
			}
		}
		if rr.IsDefault {
			defaults++
			if defaults > 1 {
				v.add(CodeInvalidInput, rp+".isDefault", "only one retention rule may have isDefault true.")
			}
		}
		validateLifecycles(v, rr.Lifecycles, tagEvery(rr.Name, every), rp+".lifecycles")
	}
	if defaults == 0 {
		v.add(CodeInvalidInput, "properties.policyRules", "the default retention rule {\"objectType\": %q, \"name\": %q, \"isDefault\": true} is mandatory.", ObjectTypeAzureRetentionRule, TagDefault)
	}
	for _, t := range tags {
		found := false
		for _, n := range names {
			found = found || strings.EqualFold(n, t.name)
		}
		if !found && !(strings.EqualFold(t.name, TagDefault) && defaults == 0) {
			v.add(CodeInvalidInput, t.target+".tagInfo.tagName", "tag %q has no retention rule; add an AzureRetentionRule named %q.", t.name, t.name)
		}
	}
}

// tagEvery returns how often a retention rule keeps a backup, for the
// 450-backup cap: the Default rule keeps every scheduled backup (the
// schedule's period); Daily and Weekly keep at most one a day or a week, so
// for them only the 1-year cap can bind. This is what makes the Daily+Weekly
// policies Azure's own clients build valid (4-hourly with Weekly P12W, 84
// days, beyond 450 4-hourly backups).
func tagEvery(rule string, every time.Duration) time.Duration {
	switch {
	case strings.EqualFold(rule, TagDaily):
		return 24 * time.Hour
	case strings.EqualFold(rule, TagWeekly):
		return 7 * 24 * time.Hour
	}
	return every
}

func findTag(tags []tagInfo, name string) *tagInfo {
	for i := range tags {
		if strings.EqualFold(tags[i].name, name) {
			return &tags[i]
		}
	}
	return nil
}

func validateLifecycles(v *validation, lcs []SourceLifeCycle, every time.Duration, prefix string) {
	if len(lcs) != 1 {
		v.add(CodeInvalidInput, prefix, "a disk retention rule needs exactly one life cycle, in %q; got %d.", DataStoreOperational, len(lcs))
		return
	}
	lc := lcs[0]
	lp := prefix + "[0]"
	switch da := lc.DeleteAfter; {
	case da == nil:
		v.add(CodeInvalidRetentionDuration, lp+".deleteAfter", "deleteAfter is required: {\"objectType\": %q, \"duration\": \"P7D\"}.", ObjectTypeAbsoluteDeleteOption)
	case !strings.EqualFold(da.ObjectType, ObjectTypeAbsoluteDeleteOption):
		v.add(CodeInvalidInput, lp+".deleteAfter.objectType", "deleteAfter objectType %q is not supported; it must be %q.", da.ObjectType, ObjectTypeAbsoluteDeleteOption)
	default:
		validateRetention(v, da.Duration, every, lp+".deleteAfter.duration")
	}
	validateDataStore(v, lc.SourceDataStore, lp+".sourceDataStore")
	if lc.TargetDataStoreCopySettings != nil && len(*lc.TargetDataStoreCopySettings) > 0 {
		v.add(CodeInvalidInput, lp+".targetDataStoreCopySettings", "copying disk backups to another data store is not supported; targetDataStoreCopySettings must be empty.")
	}
}

func validateRetention(v *validation, s string, every time.Duration, target string) {
	d, err := schedule.ParseDuration(s)
	if err != nil {
		v.add(CodeInvalidRetentionDuration, target, "retention duration %q is not a valid ISO 8601 duration such as P7D, P12W, P6M or P1Y: %v.", s, err)
		return
	}
	if d.Nominal() <= 0 {
		v.add(CodeInvalidRetentionDuration, target, "retention duration %s must be positive.", d)
		return
	}
	if e := checkRetentionCap(d, every); e != nil {
		v.errs = append(v.errs, e.WithTarget(target))
	}
}

// checkRetentionCap is the 1-year/450-backup check of a retention rule
// that keeps a backup every every, as ValidatePolicy reports it.
func checkRetentionCap(d schedule.Duration, every time.Duration) *resource.Error {
	if err := schedule.CheckRetention(d, every); err != nil {
		return resource.Errorf(resource.KindBadRequest, CodeRetentionDurationExceeded, "%s.", err)
	}
	return nil
}

// MaxRuleRetention returns the longest retention the retention rule named
// rule may have in a policy with backups every every (24 hours: daily),
// and whether the limit is the 450-backup count (true) or the year: the
// Default rule keeps every backup, so 450 of them bind it below a year
// for hourly schedules; Daily and Weekly keep one a day or a week, so
// only the year binds them.
func MaxRuleRetention(rule string, every time.Duration) (time.Duration, bool) {
	return schedule.MaxRetention(tagEvery(rule, every))
}

// ValidatePolicyForDiskSKU checks that p is valid (ValidatePolicy) and can
// protect a disk of the given SKU: Premium SSD v2 (PremiumV2_LRS) and Ultra
// (UltraSSD_LRS) disks allow only 12-hourly (PT12H) or daily (P1D) backups.
func ValidatePolicyForDiskSKU(p BackupPolicy, sku string) error {
	if err := ValidatePolicy(p); err != nil {
		return err
	}
	if !strings.EqualFold(sku, SKUPremiumV2LRS) && !strings.EqualFold(sku, SKUUltraSSDLRS) {
		return nil
	}
	br, i := p.BackupRule()
	iv, err := schedule.ParseInterval(br.Trigger.Schedule.RepeatingTimeIntervals[0])
	if err != nil { // unreachable after ValidatePolicy
		return fmt.Errorf("parse validated schedule: %w", err)
	}
	if iv.Daily() || iv.Every == 12*time.Hour {
		return nil
	}
	every := "hour"
	if h := int(iv.Every / time.Hour); h > 1 {
		every = fmt.Sprintf("%d hours", h)
	}
	return resource.Errorf(resource.KindBadRequest, CodeBackupFrequencyNotSupportedForDiskSKU,
		"disks of SKU %s can be backed up only every 12 hours (PT12H) or daily (P1D); the policy backs up every %s (%s).",
		sku, every, iv.Period()).
		WithTarget(fmt.Sprintf("properties.policyRules[%d].trigger.schedule.repeatingTimeIntervals[0]", i))
}

// Schedule returns the schedule of a valid policy.
func (p *BackupPolicy) Schedule() (*schedule.Schedule, error) {
	br, _ := p.BackupRule()
	if br == nil || br.Trigger == nil || len(br.Trigger.Schedule.RepeatingTimeIntervals) != 1 {
		return nil, errors.New("dataprotection: policy has no schedule")
	}
	s, err := schedule.New(br.Trigger.Schedule.RepeatingTimeIntervals[0], br.Trigger.Schedule.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("dataprotection: policy schedule: %w", err)
	}
	return s, nil
}

// Retention returns the tagging and retention rules of a valid policy, in
// the policy's time zone.
func (p *BackupPolicy) Retention() (schedule.Retention, error) {
	s, err := p.Schedule()
	if err != nil {
		return schedule.Retention{}, err
	}
	br, _ := p.BackupRule()
	r := schedule.Retention{Location: s.Location()}
	for _, tc := range br.Trigger.TaggingCriteria {
		d, ok := p.RetentionDuration(tc.TagInfo.TagName)
		if !ok {
			return schedule.Retention{}, fmt.Errorf("dataprotection: tag %q has no valid retention rule", tc.TagInfo.TagName)
		}
		rule := schedule.TagRule{Name: tc.TagInfo.TagName, Default: tc.IsDefault, Priority: int(tc.TaggingPriority), Retention: d}
		if !tc.IsDefault && len(tc.Criteria) == 1 && len(tc.Criteria[0].AbsoluteCriteria) == 1 {
			switch c := tc.Criteria[0].AbsoluteCriteria[0]; {
			case strings.EqualFold(c, AbsoluteFirstOfDay):
				rule.Criterion = schedule.FirstOfDay
			case strings.EqualFold(c, AbsoluteFirstOfWeek):
				rule.Criterion = schedule.FirstOfWeek
			}
		}
		r.Rules = append(r.Rules, rule)
	}
	return r, nil
}

// RetentionDuration returns the retention of the rule named tag (matched
// case-insensitively), for scheduled backups with that tag and on-demand
// backups whose retentionTagOverride names it.
func (p *BackupPolicy) RetentionDuration(tag string) (schedule.Duration, bool) {
	for _, rr := range p.RetentionRules() {
		if !strings.EqualFold(rr.Name, tag) || len(rr.Lifecycles) == 0 || rr.Lifecycles[0].DeleteAfter == nil {
			continue
		}
		d, err := schedule.ParseDuration(rr.Lifecycles[0].DeleteAfter.Duration)
		if err != nil {
			return schedule.Duration{}, false
		}
		return d, true
	}
	return schedule.Duration{}, false
}

// The MarshalJSON methods below write the canonical objectType when it is
// empty, so that values built in Go need not set it.

// MarshalJSON implements json.Marshaler.
func (r *AzureBackupRule) MarshalJSON() ([]byte, error) {
	type plain AzureBackupRule
	v := plain(*r)
	v.ObjectType = ObjectTypeAzureBackupRule
	return json.Marshal(v)
}

// MarshalJSON implements json.Marshaler.
func (r *AzureRetentionRule) MarshalJSON() ([]byte, error) {
	type plain AzureRetentionRule
	v := plain(*r)
	v.ObjectType = ObjectTypeAzureRetentionRule
	return json.Marshal(v)
}

// MarshalJSON implements json.Marshaler.
func (p AzureBackupParams) MarshalJSON() ([]byte, error) {
	type plain AzureBackupParams
	p.ObjectType = canonical(p.ObjectType, ObjectTypeAzureBackupParams)
	return json.Marshal(plain(p))
}

// MarshalJSON implements json.Marshaler.
func (d DataStoreInfoBase) MarshalJSON() ([]byte, error) {
	type plain DataStoreInfoBase
	d.ObjectType = canonical(d.ObjectType, ObjectTypeDataStoreInfoBase)
	return json.Marshal(plain(d))
}

// MarshalJSON implements json.Marshaler.
func (t ScheduleBasedTriggerContext) MarshalJSON() ([]byte, error) {
	type plain ScheduleBasedTriggerContext
	t.ObjectType = canonical(t.ObjectType, ObjectTypeScheduleBasedTriggerContext)
	return json.Marshal(plain(t))
}

// MarshalJSON implements json.Marshaler.
func (c ScheduleBasedBackupCriteria) MarshalJSON() ([]byte, error) {
	type plain ScheduleBasedBackupCriteria
	c.ObjectType = canonical(c.ObjectType, ObjectTypeScheduleBasedBackupCriteria)
	return json.Marshal(plain(c))
}

// MarshalJSON implements json.Marshaler.
func (o AbsoluteDeleteOption) MarshalJSON() ([]byte, error) {
	type plain AbsoluteDeleteOption
	o.ObjectType = canonical(o.ObjectType, ObjectTypeAbsoluteDeleteOption)
	return json.Marshal(plain(o))
}
