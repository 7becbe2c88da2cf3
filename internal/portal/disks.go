package portal

func (p *Portal) diskRoutes() {
	p.page("GET /disks", p.diskList)
}

func (p *Portal) diskList(rq *Request) error {
	ds, err := rq.disks()
	if err != nil {
		return err
	}
	return rq.Render("disks", ds)
}
