package dataprotection

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"coffer/internal/resource"
	"coffer/internal/schedule"
)

// decodePolicyResource decodes a policy resource with the model's JSON
// decoding (what the store reads and the API decodes a PUT with).
func decodePolicyResource(b []byte) (BaseBackupPolicyResource, error) {
	var r BaseBackupPolicyResource
	err := json.Unmarshal(b, &r)
	return r, err
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "policy", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameJSON reports whether a and b are the same JSON value (key order aside).
func sameJSON(t testing.TB, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("unmarshal %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

func TestDefaultPolicyTemplate(t *testing.T) {
	want := readTestdata(t, "default_template.json")
	got, err := json.Marshal(DefaultPolicyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	if !sameJSON(t, got, want) {
		t.Errorf("DefaultPolicyTemplate() JSON =\n%s\nwant\n%s", got, want)
	}
	var decoded PolicyTemplate
	if err := json.Unmarshal(want, &decoded); err != nil {
		t.Fatal(err)
	}
	if decoded.Name != "DiskPolicy" {
		t.Errorf("decoded template name = %q", decoded.Name)
	}
	again, _ := json.Marshal(decoded)
	if !sameJSON(t, again, want) {
		t.Errorf("template round trip =\n%s", again)
	}
	if err := ValidatePolicy(DefaultPolicyTemplate().BackupPolicy); err != nil {
		t.Errorf("ValidatePolicy(default template) = %v", err)
	}
}

func TestDecodeDailyWeekly(t *testing.T) {
	body := readTestdata(t, "daily_weekly.json")
	r, err := decodePolicyResource(body)
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidatePolicy(r.Properties); err != nil {
		t.Fatalf("ValidatePolicy = %v", err)
	}
	got, _ := json.Marshal(r)
	if !sameJSON(t, got, body) {
		t.Errorf("round trip =\n%s\nwant\n%s", got, body)
	}
	built, err := BuildDiskPolicy(DiskPolicyOptions{
		Hours: 4, Time: "10:00", Date: time.Date(2021, 5, 21, 0, 0, 0, 0, time.UTC), TimeZone: "UTC",
		Retention: "7d", DailyRetention: "30d", WeeklyRetention: "12w",
	})
	if err != nil {
		t.Fatal(err)
	}
	gotBuilt, _ := json.Marshal(BaseBackupPolicyResource{Properties: built})
	if !sameJSON(t, gotBuilt, body) {
		t.Errorf("BuildDiskPolicy =\n%s\nwant\n%s", gotBuilt, body)
	}
}

func TestDecodeCanonicalCasing(t *testing.T) {
	r, err := decodePolicyResource(readTestdata(t, "mixed_case.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidatePolicy(r.Properties); err != nil {
		t.Fatalf("ValidatePolicy = %v", err)
	}
	r.Properties.Normalize()
	out, _ := json.Marshal(r)
	s := string(out)
	for _, want := range []string{
		`"objectType":"BackupPolicy"`, `"objectType":"AzureBackupRule"`, `"objectType":"AzureBackupParams"`,
		`"objectType":"DataStoreInfoBase"`, `"objectType":"ScheduleBasedTriggerContext"`,
		`"objectType":"ScheduleBasedBackupCriteria"`, `"objectType":"AzureRetentionRule"`,
		`"objectType":"AbsoluteDeleteOption"`, `"id":"Default_"`, `"id":"daily_"`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %s:\n%s", want, s)
		}
	}
	for _, bad := range []string{"azurebackuprule", "AZURERETENTIONRULE", "absolutedeleteoption", "datastoreinfobase"} {
		if strings.Contains(s, bad) {
			t.Errorf("output keeps %s:\n%s", bad, s)
		}
	}
}

// TestDecodePolicyErrors: bodies of the wrong shape do not decode (the API
// answers them 400 InvalidRequestContent); a rule that does not decode is
// located by its index.
func TestDecodePolicyErrors(t *testing.T) {
	for _, body := range []string{
		``, `{`, `[]`, `{"properties": 5}`, `{"properties": {"policyRules": {}}}`,
		`{"properties": {"policyRules": [5]}}`, `{"properties": {"policyRules": [{"objectType": "AzureBackupRule", "name": 5}]}}`,
		`{"properties": {"policyRules": [{"objectType": "AzureRetentionRule", "lifecycles": {}}]}}`,
	} {
		if _, err := decodePolicyResource([]byte(body)); err == nil {
			t.Errorf("decode(%s) succeeded", body)
		}
	}
	_, err := decodePolicyResource([]byte(`{"properties": {"policyRules": [{"objectType": "AzureBackupRule", "name": 5}]}}`))
	var re *RuleDecodeError
	if !errors.As(err, &re) || re.Index != 0 {
		t.Errorf("decode error = %v, want a RuleDecodeError of rule 0", err)
	}
	// other kinds of rule and trigger decode, for validation to report
	r, err := decodePolicyResource([]byte(`{"properties": {"objectType": "BackupPolicy", "policyRules": [
		{"objectType": "AzureBackupRule", "name": "x", "trigger": {"objectType": "AdhocBasedTriggerContext", "taggingCriteria": {"tagInfo": {"tagName": "x"}}}},
		{"objectType": "SomethingElse", "name": "y"}, null]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(r.Properties.PolicyRules); n != 3 {
		t.Fatalf("%d rules", n)
	}
	if tr := r.Properties.PolicyRules[0].(*AzureBackupRule).Trigger; tr.ObjectType != "AdhocBasedTriggerContext" {
		t.Errorf("trigger = %+v", tr)
	}
	if u := r.Properties.PolicyRules[1].(*UnknownRule); u.ObjectType != "SomethingElse" || u.Name != "y" {
		t.Errorf("unknown rule = %+v", u)
	}
}

// validPolicy returns a valid 4-hourly Daily+Weekly policy to mutate.
func validPolicy(t testing.TB) BackupPolicy {
	t.Helper()
	r, err := decodePolicyResource(readTestdata(t, "daily_weekly.json"))
	if err != nil {
		t.Fatal(err)
	}
	return r.Properties
}

func backupRule(p *BackupPolicy) *AzureBackupRule { return p.PolicyRules[0].(*AzureBackupRule) }

func retentionRule(p *BackupPolicy, i int) *AzureRetentionRule {
	return p.PolicyRules[i].(*AzureRetentionRule)
}

func TestValidatePolicy(t *testing.T) {
	const br = "properties.policyRules[0]"
	const sched = br + ".trigger.schedule"
	const tags = br + ".trigger.taggingCriteria"
	tests := []struct {
		name   string
		mutate func(p *BackupPolicy)
		code   string
		target string
		msg    string
	}{
		{"objectType missing", func(p *BackupPolicy) { p.ObjectType = "" }, CodeInvalidInput, "properties.objectType", `objectType is required; it must be "BackupPolicy"`},
		{"objectType wrong", func(p *BackupPolicy) { p.ObjectType = "OtherPolicy" }, CodeInvalidInput, "properties.objectType", `"OtherPolicy" is not supported`},
		{"datasource type other", func(p *BackupPolicy) { p.DatasourceTypes = []string{"Microsoft.DBforPostgreSQL/servers/databases"} }, CodeInvalidInput, "properties.datasourceTypes[0]", `backs up only "Microsoft.Compute/disks"`},
		{"datasource types two", func(p *BackupPolicy) { p.DatasourceTypes = append(p.DatasourceTypes, DatasourceTypeDisk) }, CodeInvalidInput, "properties.datasourceTypes", `exactly ["Microsoft.Compute/disks"]; got 2`},
		{"datasource types none", func(p *BackupPolicy) { p.DatasourceTypes = nil }, CodeInvalidInput, "properties.datasourceTypes", "got 0"},
		{"no rules", func(p *BackupPolicy) { p.PolicyRules = nil }, CodeInvalidInput, "properties.policyRules", "policyRules is required"},
		{"unknown rule", func(p *BackupPolicy) {
			p.PolicyRules = append(p.PolicyRules, &UnknownRule{ObjectType: "AzureArchiveRule"})
		}, CodeInvalidInput, "properties.policyRules[4].objectType", `"AzureArchiveRule" is not supported`},
		{"no backup rule", func(p *BackupPolicy) { p.PolicyRules = p.PolicyRules[1:] }, CodeInvalidInput, "properties.policyRules", "exactly one AzureBackupRule (with the schedule); found none"},
		{"two backup rules", func(p *BackupPolicy) {
			second := *backupRule(p)
			second.Name = "BackupDaily"
			p.PolicyRules = append(p.PolicyRules, &second)
		}, CodeInvalidInput, "properties.policyRules[4]", `exactly one AzureBackupRule; rule "BackupDaily" is another one`},
		{"backup rule name", func(p *BackupPolicy) { backupRule(p).Name = "" }, CodeInvalidInput, br + ".name", "name is required"},
		{"vault store", func(p *BackupPolicy) { backupRule(p).DataStore.DataStoreType = "VaultStore" }, CodeInvalidInput, br + ".dataStore.dataStoreType", `"VaultStore" is not supported for disks; only "OperationalStore"`},
		{"datastore objectType", func(p *BackupPolicy) { backupRule(p).DataStore.ObjectType = "Other" }, CodeInvalidInput, br + ".dataStore.objectType", `must be "DataStoreInfoBase"`},
		{"backup parameters missing", func(p *BackupPolicy) { backupRule(p).BackupParameters = nil }, CodeInvalidInput, br + ".backupParameters", "backupParameters is required"},
		{"backup type full", func(p *BackupPolicy) { backupRule(p).BackupParameters.BackupType = "Full" }, CodeInvalidInput, br + ".backupParameters.backupType", `"Full" is not supported for disks; only "Incremental"`},
		{"backup type discrete", func(p *BackupPolicy) { backupRule(p).BackupParameters.BackupType = "Discrete" }, CodeInvalidInput, br + ".backupParameters.backupType", "only \"Incremental\""},
		{"trigger missing", func(p *BackupPolicy) { backupRule(p).Trigger = nil }, CodeInvalidInput, br + ".trigger", "trigger is required"},
		{"adhoc trigger", func(p *BackupPolicy) {
			backupRule(p).Trigger = &ScheduleBasedTriggerContext{ObjectType: "AdhocBasedTriggerContext"}
		}, CodeInvalidInput, br + ".trigger.objectType", `"AdhocBasedTriggerContext" is not supported for disks`},
		{"two intervals", func(p *BackupPolicy) {
			s := &backupRule(p).Trigger.Schedule
			s.RepeatingTimeIntervals = append(s.RepeatingTimeIntervals, s.RepeatingTimeIntervals[0])
		}, CodeInvalidRepeatingTimeInterval, sched + ".repeatingTimeIntervals", "exactly one entry"},
		{"time only", func(p *BackupPolicy) {
			backupRule(p).Trigger.Schedule.RepeatingTimeIntervals = []string{"R/T10:00:00+00:00/PT4H"}
		}, CodeInvalidRepeatingTimeInterval, sched + ".repeatingTimeIntervals[0]", "full date-time"},
		{"no offset", func(p *BackupPolicy) {
			backupRule(p).Trigger.Schedule.RepeatingTimeIntervals = []string{"R/2021-05-21T10:00:00/PT4H"}
		}, CodeInvalidRepeatingTimeInterval, sched + ".repeatingTimeIntervals[0]", "no UTC offset"},
		{"every 3 hours", func(p *BackupPolicy) {
			backupRule(p).Trigger.Schedule.RepeatingTimeIntervals = []string{"R/2021-05-21T10:00:00+00:00/PT3H"}
		}, CodeUnsupportedBackupFrequency, sched + ".repeatingTimeIntervals[0]", "allowed: PT1H, PT2H, PT4H, PT6H, PT8H, PT12H (hourly) or P1D (daily)"},
		{"weekly", func(p *BackupPolicy) {
			backupRule(p).Trigger.Schedule.RepeatingTimeIntervals = []string{"R/2021-05-21T10:00:00+00:00/P1W"}
		}, CodeUnsupportedBackupFrequency, sched + ".repeatingTimeIntervals[0]", "weekly backup (P1W) is not supported for disk backup"},
		{"time zone", func(p *BackupPolicy) { backupRule(p).Trigger.Schedule.TimeZone = "Pacific Time" }, CodeInvalidTimeZone, sched + ".timeZone", `"Pacific Time"`},
		{"no tagging criteria", func(p *BackupPolicy) { backupRule(p).Trigger.TaggingCriteria = nil }, CodeInvalidInput, tags, "taggingCriteria is required"},
		{"no default tag", func(p *BackupPolicy) {
			tr := backupRule(p).Trigger
			tr.TaggingCriteria = tr.TaggingCriteria[1:]
		}, CodeInvalidInput, tags, "must contain the default tag"},
		{"default tag renamed", func(p *BackupPolicy) {
			backupRule(p).Trigger.TaggingCriteria[0].TagInfo.TagName = "Basic"
		}, CodeInvalidInput, tags + "[0].tagInfo.tagName", `must be named "Default"; got "Basic"`},
		{"default tag with criteria", func(p *BackupPolicy) {
			tc := backupRule(p).Trigger.TaggingCriteria
			tc[0].Criteria = tc[1].Criteria
		}, CodeInvalidInput, tags + "[0].criteria", "must not have criteria"},
		{"two defaults", func(p *BackupPolicy) { backupRule(p).Trigger.TaggingCriteria[1].IsDefault = true }, CodeInvalidInput, tags + "[1].isDefault", "only one tag may have isDefault true"},
		{"Default not default", func(p *BackupPolicy) {
			tr := backupRule(p).Trigger
			tr.TaggingCriteria = append(tr.TaggingCriteria, TaggingCriteria{TagInfo: RetentionTag{TagName: "default"}})
		}, CodeInvalidInput, tags + "[3].tagInfo.tagName", `tag "default" appears more than once`},
		{"monthly tag", func(p *BackupPolicy) {
			tc := &backupRule(p).Trigger.TaggingCriteria[2]
			tc.TagInfo.TagName = "Monthly"
			tc.Criteria[0].AbsoluteCriteria = []string{"FirstOfMonth"}
		}, CodeInvalidInput, tags + "[2].tagInfo.tagName", `tag "Monthly" is not supported for disks`},
		{"tag name empty", func(p *BackupPolicy) { backupRule(p).Trigger.TaggingCriteria[1].TagInfo.TagName = "" }, CodeInvalidInput, tags + "[1].tagInfo.tagName", "tagName is required"},
		{"daily with first of week", func(p *BackupPolicy) {
			backupRule(p).Trigger.TaggingCriteria[1].Criteria[0].AbsoluteCriteria = []string{"FirstOfWeek"}
		}, CodeInvalidInput, tags + "[1].criteria[0].absoluteCriteria[0]", `tag "Daily" must use absolute criterion "FirstOfDay"; got "FirstOfWeek"`},
		{"all backup", func(p *BackupPolicy) {
			backupRule(p).Trigger.TaggingCriteria[2].Criteria[0].AbsoluteCriteria = []string{"AllBackup"}
		}, CodeInvalidInput, tags + "[2].criteria[0].absoluteCriteria[0]", `must use absolute criterion "FirstOfWeek"; got "AllBackup"`},
		{"no criteria", func(p *BackupPolicy) { backupRule(p).Trigger.TaggingCriteria[1].Criteria = nil }, CodeInvalidInput, tags + "[1].criteria", "needs exactly one criterion"},
		{"two absolute criteria", func(p *BackupPolicy) {
			backupRule(p).Trigger.TaggingCriteria[1].Criteria[0].AbsoluteCriteria = []string{"FirstOfDay", "FirstOfWeek"}
		}, CodeInvalidInput, tags + "[1].criteria[0].absoluteCriteria", "exactly one absolute criterion"},
		{"days of week", func(p *BackupPolicy) {
			backupRule(p).Trigger.TaggingCriteria[2].Criteria[0].DaysOfTheWeek = []string{"Sunday"}
		}, CodeInvalidInput, tags + "[2].criteria[0]", "only absoluteCriteria"},
		{"criterion objectType", func(p *BackupPolicy) {
			backupRule(p).Trigger.TaggingCriteria[2].Criteria[0].ObjectType = "Other"
		}, CodeInvalidInput, tags + "[2].criteria[0].objectType", `must be "ScheduleBasedBackupCriteria"`},
		{"same priority", func(p *BackupPolicy) { backupRule(p).Trigger.TaggingCriteria[2].TaggingPriority = 25 }, CodeInvalidInput, tags + "[2].taggingPriority", `tags "Daily" and "Weekly" have the same taggingPriority 25`},
		{"negative priority", func(p *BackupPolicy) { backupRule(p).Trigger.TaggingCriteria[1].TaggingPriority = -1 }, CodeInvalidInput, tags + "[1].taggingPriority", "must not be negative"},
		{"tag without retention rule", func(p *BackupPolicy) { p.PolicyRules = p.PolicyRules[:3] }, CodeInvalidInput, tags + "[2].tagInfo.tagName", `tag "Weekly" has no retention rule`},
		{"retention rule without tag", func(p *BackupPolicy) {
			tr := backupRule(p).Trigger
			tr.TaggingCriteria = tr.TaggingCriteria[:2]
		}, CodeInvalidInput, "properties.policyRules[3].name", `retention rule "Weekly" has no tag`},
		{"no default retention rule", func(p *BackupPolicy) {
			p.PolicyRules = append(p.PolicyRules[:1], p.PolicyRules[2:]...)
		}, CodeInvalidInput, "properties.policyRules", `the default retention rule {"objectType": "AzureRetentionRule", "name": "Default", "isDefault": true} is mandatory`},
		{"default retention not default", func(p *BackupPolicy) { retentionRule(p, 1).IsDefault = false }, CodeInvalidInput, "properties.policyRules[1].isDefault", `retention rule "Default" must have isDefault true`},
		{"default retention renamed", func(p *BackupPolicy) { retentionRule(p, 2).IsDefault = true }, CodeInvalidInput, "properties.policyRules[2].name", `must be named "Default"; got "Daily"`},
		{"duplicate retention rule", func(p *BackupPolicy) {
			dup := *retentionRule(p, 2)
			p.PolicyRules = append(p.PolicyRules, &dup)
		}, CodeInvalidInput, "properties.policyRules[4].name", `retention rule "Daily" appears more than once`},
		{"retention rule name empty", func(p *BackupPolicy) { retentionRule(p, 2).Name = "" }, CodeInvalidInput, "properties.policyRules[2].name", "name is required"},
		{"two lifecycles", func(p *BackupPolicy) {
			r := retentionRule(p, 1)
			r.Lifecycles = append(r.Lifecycles, r.Lifecycles[0])
		}, CodeInvalidInput, "properties.policyRules[1].lifecycles", "exactly one life cycle"},
		{"deleteAfter missing", func(p *BackupPolicy) { retentionRule(p, 1).Lifecycles[0].DeleteAfter = nil }, CodeInvalidRetentionDuration, "properties.policyRules[1].lifecycles[0].deleteAfter", "deleteAfter is required"},
		{"deleteAfter objectType", func(p *BackupPolicy) {
			retentionRule(p, 1).Lifecycles[0].DeleteAfter = &AbsoluteDeleteOption{ObjectType: "RelativeDeleteOption", Duration: "P7D"}
		}, CodeInvalidInput, "properties.policyRules[1].lifecycles[0].deleteAfter.objectType", `"RelativeDeleteOption" is not supported`},
		{"bad duration", func(p *BackupPolicy) { retentionRule(p, 1).Lifecycles[0].DeleteAfter.Duration = "7 days" }, CodeInvalidRetentionDuration, "properties.policyRules[1].lifecycles[0].deleteAfter.duration", `"7 days" is not a valid ISO 8601 duration`},
		{"zero duration", func(p *BackupPolicy) { retentionRule(p, 1).Lifecycles[0].DeleteAfter.Duration = "P0D" }, CodeInvalidRetentionDuration, "properties.policyRules[1].lifecycles[0].deleteAfter.duration", "must be positive"},
		{"over 450 backups", func(p *BackupPolicy) { retentionRule(p, 1).Lifecycles[0].DeleteAfter.Duration = "P11W" }, CodeRetentionDurationExceeded, "properties.policyRules[1].lifecycles[0].deleteAfter.duration", "retention P11W exceeds the maximum of 75 days (P75D) for backups every 4 hours (450 backups)"},
		{"weekly over a year", func(p *BackupPolicy) { retentionRule(p, 3).Lifecycles[0].DeleteAfter.Duration = "P53W" }, CodeRetentionDurationExceeded, "properties.policyRules[3].lifecycles[0].deleteAfter.duration", "retention P53W exceeds the maximum of 1 year (P1Y, 365 days)"},
		{"12-hourly P300D", func(p *BackupPolicy) {
			backupRule(p).Trigger.Schedule.RepeatingTimeIntervals = []string{"R/2021-05-21T10:00:00+00:00/PT12H"}
			retentionRule(p, 1).Lifecycles[0].DeleteAfter.Duration = "P300D"
		}, CodeRetentionDurationExceeded, "properties.policyRules[1].lifecycles[0].deleteAfter.duration", "retention P300D exceeds the maximum of 225 days (P225D) for backups every 12 hours (450 backups)"},
		{"daily over a year", func(p *BackupPolicy) {
			backupRule(p).Trigger.Schedule.RepeatingTimeIntervals = []string{"R/2021-05-21T10:00:00+00:00/P1D"}
			retentionRule(p, 3).Lifecycles[0].DeleteAfter.Duration = "P13M"
		}, CodeRetentionDurationExceeded, "properties.policyRules[3].lifecycles[0].deleteAfter.duration", "retention P13M exceeds the maximum of 1 year (P1Y, 365 days)"},
		{"source vault store", func(p *BackupPolicy) { retentionRule(p, 1).Lifecycles[0].SourceDataStore.DataStoreType = "VaultStore" }, CodeInvalidInput, "properties.policyRules[1].lifecycles[0].sourceDataStore.dataStoreType", `"VaultStore" is not supported for disks`},
		{"copy settings", func(p *BackupPolicy) {
			retentionRule(p, 1).Lifecycles[0].TargetDataStoreCopySettings = &[]TargetCopySetting{{DataStore: DataStoreInfoBase{ObjectType: ObjectTypeDataStoreInfoBase, DataStoreType: "VaultStore"}}}
		}, CodeInvalidInput, "properties.policyRules[1].lifecycles[0].targetDataStoreCopySettings", "targetDataStoreCopySettings must be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := validPolicy(t)
			tt.mutate(&p)
			err := ValidatePolicy(p)
			e := resource.AsError(err)
			if e == nil {
				t.Fatalf("ValidatePolicy = %v, want %s at %s", err, tt.code, tt.target)
			}
			if e.Kind != resource.KindBadRequest || e.Code != tt.code || e.Target != tt.target || !strings.Contains(e.Message, tt.msg) {
				t.Errorf("ValidatePolicy = kind %d, %s at %s: %q\nwant %s at %s: %q (details %v)", e.Kind, e.Code, e.Target, e.Message, tt.code, tt.target, tt.msg, e.Details)
			}
		})
	}
}

func TestValidatePolicyCollectsDetails(t *testing.T) {
	p := validPolicy(t)
	p.DatasourceTypes = []string{"Microsoft.Storage/storageAccounts/blobServices"}
	backupRule(&p).BackupParameters.BackupType = "Discrete"
	retentionRule(&p, 1).Lifecycles[0].DeleteAfter.Duration = "P2Y"
	e := resource.AsError(ValidatePolicy(p))
	if e == nil || e.Target != "properties.datasourceTypes[0]" || len(e.Details) != 2 {
		t.Fatalf("ValidatePolicy = %+v", e)
	}
	if e.Details[0].Target != "properties.policyRules[0].backupParameters.backupType" || e.Details[1].Code != CodeRetentionDurationExceeded {
		t.Errorf("details = %v, %v", e.Details[0], e.Details[1])
	}
}

func TestValidatePolicyForDiskSKU(t *testing.T) {
	tests := []struct {
		period, sku string
		ok          bool
	}{
		{"PT4H", "Premium_LRS", true},
		{"PT1H", "StandardSSD_LRS", true},
		{"PT1H", "Standard_LRS", true},
		{"PT4H", "PremiumV2_LRS", false},
		{"PT8H", "UltraSSD_LRS", false},
		{"PT1H", "ultrassd_lrs", false},
		{"PT12H", "PremiumV2_LRS", true},
		{"P1D", "UltraSSD_LRS", true},
	}
	for _, tt := range tests {
		p := validPolicy(t)
		backupRule(&p).Trigger.Schedule.RepeatingTimeIntervals = []string{"R/2021-05-21T10:00:00+00:00/" + tt.period}
		err := ValidatePolicyForDiskSKU(p, tt.sku)
		if tt.ok {
			if err != nil {
				t.Errorf("%s on %s: %v", tt.period, tt.sku, err)
			}
			continue
		}
		e := resource.AsError(err)
		if e == nil || e.Code != CodeBackupFrequencyNotSupportedForDiskSKU || e.Target != "properties.policyRules[0].trigger.schedule.repeatingTimeIntervals[0]" ||
			!strings.Contains(e.Message, "only every 12 hours (PT12H) or daily (P1D)") || !strings.Contains(e.Message, tt.period) {
			t.Errorf("%s on %s: %v", tt.period, tt.sku, err)
		}
	}
	p := validPolicy(t)
	p.DatasourceTypes = nil
	if !resource.IsCode(ValidatePolicyForDiskSKU(p, SKUUltraSSDLRS), CodeInvalidInput) {
		t.Error("ValidatePolicyForDiskSKU does not validate the policy first")
	}
}

func TestBuildDiskPolicy(t *testing.T) {
	p, err := BuildDiskPolicy(DiskPolicyOptions{Hours: 4, Time: "02:00", Date: time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC),
		TimeZone: "Pacific Standard Time", Retention: "7d", DailyRetention: "30d", WeeklyRetention: "P10W"})
	if err != nil {
		t.Fatal(err)
	}
	s := backupRule(&p).Trigger.Schedule
	if s.RepeatingTimeIntervals[0] != "R/2024-07-01T02:00:00-07:00/PT4H" || s.TimeZone != "Pacific Standard Time" {
		t.Errorf("schedule = %+v", s)
	}
	p, err = BuildDiskPolicy(DiskPolicyOptions{Time: "23:30:15", Retention: "1y"})
	if err != nil {
		t.Fatal(err)
	}
	if got := backupRule(&p).Trigger.Schedule; got.RepeatingTimeIntervals[0] != "R/2020-01-01T23:30:15+00:00/P1D" || got.TimeZone != "UTC" || len(p.PolicyRules) != 2 {
		t.Errorf("daily policy = %+v, %d rules", got, len(p.PolicyRules))
	}
	for _, bad := range []DiskPolicyOptions{
		{Hours: 3, Retention: "7d"},
		{Hours: 24, Retention: "7d"},
		{Time: "25:00", Retention: "7d"},
		{Time: "2pm", Retention: "7d"},
		{TimeZone: "Mars", Retention: "7d"},
		{},
		{Retention: "7 days"},
		{Retention: "7d", DailyRetention: "x"},
		{Retention: "7d", WeeklyRetention: "12"},
	} {
		if _, err := BuildDiskPolicy(bad); err == nil {
			t.Errorf("BuildDiskPolicy(%+v) succeeded", bad)
		}
	}
	if _, err := BuildDiskPolicy(DiskPolicyOptions{Hours: 12, Retention: "7d", WeeklyRetention: "P300D"}); err != nil {
		t.Errorf("weekly P300D with 12-hourly backups: %v", err)
	}
	_, err = BuildDiskPolicy(DiskPolicyOptions{Hours: 12, Retention: "P300D"})
	if e := resource.AsError(err); e == nil || e.Code != CodeRetentionDurationExceeded ||
		e.Message != "retention P300D exceeds the maximum of 225 days (P225D) for backups every 12 hours (450 backups)." {
		t.Errorf("BuildDiskPolicy over the cap = %v", err)
	}
}

func TestPolicyScheduleAndRetention(t *testing.T) {
	p, err := BuildDiskPolicy(DiskPolicyOptions{Hours: 4, Time: "02:00", TimeZone: "Pacific Standard Time",
		Retention: "7d", DailyRetention: "30d", WeeklyRetention: "12w"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := p.Schedule()
	if err != nil {
		t.Fatal(err)
	}
	pst, _ := schedule.LoadLocation("Pacific Standard Time")
	next := s.Next(time.Date(2024, 3, 9, 23, 0, 0, 0, pst))
	if want := time.Date(2024, 3, 10, 10, 0, 0, 0, time.UTC); !next.Equal(want) {
		t.Errorf("Next = %v, want %v (02:00 does not exist; 03:00 PDT)", next, want)
	}
	r, err := p.Retention()
	if err != nil {
		t.Fatal(err)
	}
	d, err := r.Decide(next, nil)
	if err != nil || d.Rule.Name != TagWeekly || d.Rule.Criterion != schedule.FirstOfWeek {
		t.Errorf("Decide = %+v, %v", d, err)
	}
	if got, ok := p.RetentionDuration("daily"); !ok || got.String() != "P30D" {
		t.Errorf("RetentionDuration(daily) = %v, %v", got, ok)
	}
	if _, ok := p.RetentionDuration("Monthly"); ok {
		t.Error("RetentionDuration(Monthly) found")
	}
	var empty BackupPolicy
	if _, err := empty.Schedule(); err == nil {
		t.Error("Schedule of an empty policy succeeded")
	}
}

func TestNormalizeTagIDs(t *testing.T) {
	p := validPolicy(t)
	for i := range backupRule(&p).Trigger.TaggingCriteria {
		backupRule(&p).Trigger.TaggingCriteria[i].TagInfo.ID = ""
	}
	p.Normalize()
	for _, tc := range backupRule(&p).Trigger.TaggingCriteria {
		if tc.TagInfo.ID != tc.TagInfo.TagName+"_" {
			t.Errorf("tag %q id %q", tc.TagInfo.TagName, tc.TagInfo.ID)
		}
	}
}

func FuzzDecodePolicy(f *testing.F) {
	for _, name := range []string{"daily_weekly.json", "mixed_case.json"} {
		f.Add(readTestdata(f, name))
	}
	tmpl, _ := json.Marshal(BaseBackupPolicyResource{Properties: DefaultPolicyTemplate().BackupPolicy})
	f.Add(tmpl)
	f.Add([]byte(`{"properties":{"policyRules":[null,{"objectType":"AzureBackupRule","trigger":{"objectType":"x"}},{"objectType":"azureretentionrule","lifecycles":[{}]}]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := decodePolicyResource(body)
		if err != nil {
			return
		}
		verr := ValidatePolicy(r.Properties)
		if verr != nil && resource.AsError(verr) == nil {
			t.Fatalf("ValidatePolicy error %v is not a *resource.Error", verr)
		}
		_ = ValidatePolicyForDiskSKU(r.Properties, SKUUltraSSDLRS)
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("marshal decoded policy: %v", err)
		}
		again, err := decodePolicyResource(out)
		if err != nil {
			t.Fatalf("re-decode %s: %v", out, err)
		}
		if (ValidatePolicy(again.Properties) == nil) != (verr == nil) {
			t.Fatalf("validity changed over a round trip: %v", verr)
		}
		if verr == nil {
			if _, err := r.Properties.Retention(); err != nil {
				t.Fatalf("Retention of a valid policy: %v", err)
			}
		}
		_ = errors.Is(verr, nil)
	})
}

func TestMarshalFillsObjectTypes(t *testing.T) {
	p := BackupPolicy{ObjectType: ObjectTypeBackupPolicy, DatasourceTypes: []string{DatasourceTypeDisk}, PolicyRules: []PolicyRule{
		&AzureBackupRule{Name: "BackupDaily", BackupParameters: &AzureBackupParams{BackupType: BackupTypeIncremental},
			DataStore: DataStoreInfoBase{DataStoreType: DataStoreOperational},
			Trigger: &ScheduleBasedTriggerContext{Schedule: BackupSchedule{RepeatingTimeIntervals: []string{"R/2020-01-01T02:00:00+00:00/P1D"}},
				TaggingCriteria: []TaggingCriteria{{IsDefault: true, TaggingPriority: 99, TagInfo: RetentionTag{TagName: TagDefault}}}}},
		&AzureRetentionRule{Name: TagDefault, IsDefault: true, Lifecycles: []SourceLifeCycle{{
			DeleteAfter: &AbsoluteDeleteOption{Duration: "P30D"}, SourceDataStore: DataStoreInfoBase{DataStoreType: DataStoreOperational}}}},
	}}
	b, err := json.Marshal(BaseBackupPolicyResource{Properties: p})
	if err != nil {
		t.Fatal(err)
	}
	r, err := decodePolicyResource(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidatePolicy(r.Properties); err != nil {
		t.Errorf("ValidatePolicy(%s) = %v", b, err)
	}
	if strings.Contains(string(b), `"objectType":""`) {
		t.Errorf("empty objectType written: %s", b)
	}
}
