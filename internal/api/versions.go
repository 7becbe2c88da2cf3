package api

// api-versions accepted per resource provider. Coffer's wire shapes for the
// resource types it serves are the same across these versions; requests
// naming another version get 400 InvalidApiVersionParameter listing these.
var (
	// ResourcesVersions: Microsoft.Resources (subscriptions, groups).
	ResourcesVersions = []string{
		"2014-04-01", "2015-01-01", "2015-11-01", "2016-02-01", "2016-06-01", "2016-09-01", "2017-05-10",
		"2018-02-01", "2018-05-01", "2019-03-01", "2019-05-01", "2019-05-10", "2019-06-01", "2019-07-01",
		"2019-08-01", "2019-10-01", "2019-11-01", "2020-01-01", "2020-06-01", "2020-08-01", "2020-10-01",
		"2021-01-01", "2021-04-01", "2022-01-01", "2022-09-01", "2022-12-01", "2023-07-01", "2024-03-01",
		"2024-07-01", "2024-11-01", "2025-01-01", "2025-03-01", "2025-04-01",
	}
	// AuthorizationVersions: Microsoft.Authorization.
	AuthorizationVersions = []string{
		"2015-07-01", "2017-05-01", "2018-01-01-preview", "2018-09-01-preview", "2020-03-01-preview",
		"2020-04-01-preview", "2020-08-01-preview", "2020-10-01-preview", "2021-04-01-preview",
		"2022-01-01-preview", "2022-04-01", "2022-05-01-preview",
	}
	// SubscriptionAliasVersions: Microsoft.Subscription/aliases.
	SubscriptionAliasVersions = []string{"2019-10-01-preview", "2020-09-01", "2021-10-01", "2024-08-01-preview"}
	// IdentityVersions: Coffer.Identity, Coffer's own principal API.
	IdentityVersions = []string{"2024-01-01"}
	// OperationVersions: operation-status polls carry whatever version the
	// original request had, so they accept every version above and the
	// providers' own.
	OperationVersions []string
)

// AddOperationVersions extends the versions accepted on operation polls.
func AddOperationVersions(vs ...[]string) {
	for _, v := range vs {
		OperationVersions = appendUnique(OperationVersions, v...)
	}
}

func appendUnique(dst []string, src ...string) []string {
	seen := map[string]bool{}
	for _, s := range dst {
		seen[s] = true
	}
	for _, s := range src {
		if !seen[s] {
			seen[s] = true
			dst = append(dst, s)
		}
	}
	return dst
}
