package compute

// GrantID is the ID of the grant a data access uses (for the access log;
// the grant's token is never logged).
func (a *DataAccess) GrantID() string {
	if a == nil || a.g == nil {
		return ""
	}
	return a.g.ID
}

// Creator is the principal that created the grant a data access uses: the
// principal its requests act for.
func (a *DataAccess) Creator() string {
	if a == nil || a.g == nil {
		return ""
	}
	return a.g.creator
}
