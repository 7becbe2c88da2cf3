package portal

func (p *Portal) overview(rq *Request) error {
	return rq.Render("overview", nil)
}
