// Package corpus generates a deterministic corpus of realistic Segment / RudderStack-style
// events (track, identify and page calls from browsers and mobile apps) for tests and
// benchmarks of the mapping engine. The same seed always yields byte-identical events.
package corpus

import (
	"bufio"
	"io"
	"math/rand/v2"
	"strconv"
	"time"
	"unicode/utf8"
)

// pcgStream is the second PCG word; the seed supplies the first.
const pcgStream = 0x9e3779b97f4a7c15

// Generate returns n events generated from seed, each a compact JSON object. About 60% are track
// calls, 20% identify and 20% page calls; the average event is about 1.2 KB. The first k events
// of Generate(seed, n) equal Generate(seed, k).
func Generate(seed int64, n int) [][]byte {
	g := newGenerator(seed)
	out := make([][]byte, n)
	for i := range out {
		out[i] = g.event()
	}
	return out
}

// Write writes the n events of Generate(seed, n) to w as NDJSON: one event per line, each line
// ending in a newline.
func Write(w io.Writer, seed int64, n int) error {
	g := newGenerator(seed)
	bw := bufio.NewWriter(w)
	for i := 0; i < n; i++ {
		if _, err := bw.Write(g.event()); err != nil {
			return err
		}
		if err := bw.WriteByte('\n'); err != nil {
			return err
		}
	}
	return bw.Flush()
}

type generator struct {
	r *rand.Rand
}

func newGenerator(seed int64) *generator {
	return &generator{r: rand.New(rand.NewPCG(uint64(seed), pcgStream))}
}

// chance reports true with probability p.
func (g *generator) chance(p float64) bool { return g.r.Float64() < p }

func pick[T any](g *generator, xs []T) T { return xs[g.r.IntN(len(xs))] }

// hex appends n random lower-case hex digits.
func (g *generator) hex(b []byte, n int) []byte {
	const digits = "0123456789abcdef"
	for i := 0; i < n; i++ {
		b = append(b, digits[g.r.IntN(16)])
	}
	return b
}

// uuid returns a random version-4 UUID.
func (g *generator) uuid() string {
	b := make([]byte, 0, 36)
	b = g.hex(b, 8)
	b = append(b, '-')
	b = g.hex(b, 4)
	b = append(b, '-', '4')
	b = g.hex(b, 3)
	b = append(b, '-', "89ab"[g.r.IntN(4)])
	b = g.hex(b, 3)
	b = append(b, '-')
	b = g.hex(b, 12)
	return string(b)
}

func (g *generator) digits(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + g.r.IntN(10))
	}
	if b[0] == '0' {
		b[0] = '1'
	}
	return string(b)
}

// money returns a price with two decimals, such as 42.50.
func (g *generator) money(max int) string {
	cents := 100 + g.r.IntN(max*100)
	if g.chance(0.3) {
		cents = cents / 50 * 50 // 19.50, 42.00
	}
	return strconv.Itoa(cents/100) + "." + strconv.Itoa(cents%100/10) + strconv.Itoa(cents%10)
}

var (
	year2024 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	yearMs   = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Sub(year2024).Milliseconds()
	ist      = time.FixedZone("IST", 5*3600+1800)
)

// instant returns a random instant of 2024, leaving room for sentAt and receivedAt after it.
func (g *generator) instant() time.Time {
	return year2024.Add(time.Duration(g.r.Int64N(yearMs-600000)) * time.Millisecond)
}

func iso(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// writeTimestamp writes t in one of the forms SDKs send: mostly ISO-8601 in UTC, some with a
// +05:30 offset, some without a zone, a few as epoch milliseconds.
func (g *generator) writeTimestamp(e *enc, key string, t time.Time) {
	e.key(key)
	switch x := g.r.IntN(100); {
	case x < 70:
		e.str(iso(t))
	case x < 82:
		e.str(t.In(ist).Format("2006-01-02T15:04:05.000-07:00"))
	case x < 88:
		e.str(t.UTC().Format("2006-01-02T15:04:05.000"))
	case x < 92:
		e.str(t.UTC().Format("2006-01-02 15:04:05"))
	default:
		e.num(strconv.FormatInt(t.UnixMilli(), 10))
	}
}

var (
	browserUAs = []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
		"Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36 Edg/123.0.2420.97",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
	}
	iosUA     = "Acme/5.12.0 (com.acme.app; build:5120; iOS 17.4.1) Alamofire/5.9.1"
	androidUA = "Dalvik/2.1.0 (Linux; U; Android 13; SM-S911B Build/TP1A.220624.014)"

	locales = []string{"en-US", "en-US", "en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "pt-BR", "ja-JP", "en-IN", "hi-IN"}

	firstNames = []string{"Jane", "John", "Priya", "Arjun", "José", "Zoë", "Lukas", "Amélie", "Hiroshi", "Olivia", "Mohammed", "Chloé", "Wei", "Sofía", "Noah", "Emma"}
	lastNames  = []string{"Doe", "Smith", "Sharma", "Patel", "García", "Müller", "Schmidt", "Dubois", "Tanaka", "O'Brien", "Al-Farsi", "Nguyễn", "李", "Rossi", "Kowalski", "Andersson"}
	domains    = []string{"example.com", "gmail.com", "acme.io", "outlook.com", "yahoo.co.in", "company.de", "proton.me"}
	plans      = []string{"free", "starter", "pro", "business", "enterprise"}
	companies  = []string{"Acme Corp", "Globex", "Initech", "Umbrella Ltd", "Stark Industries", "Wayne Enterprises", "Hooli", "Soylent & Co"}
	industries = []string{"Retail", "SaaS", "Finance", "Healthcare", "Education", "Media"}
	cities     = []string{"San Francisco", "London", "Berlin", "Mumbai", "Bengaluru", "São Paulo", "Tokyo", "Paris"}
	countries  = []string{"US", "GB", "DE", "IN", "IN", "BR", "JP", "FR"}

	pages = []struct{ path, title, name, category string }{
		{"/", "Acme Shop – Running gear for every trail", "Home", "Marketing"},
		{"/pricing", "Pricing | Acme", "Pricing", "Marketing"},
		{"/products/trail-runner-3", "Trail Runner 3 – Men's Running Shoe | Acme Shop", "Product", "Catalog"},
		{"/blog/how-to-choose-running-shoes", "How to choose \"the right\" running shoes", "Blog Post", "Content"},
		{"/checkout", "Checkout | Acme Shop", "Checkout", "Commerce"},
		{"/signup", "Create your account | Acme", "Sign Up", "Onboarding"},
		{"/docs/getting-started", "Getting started · Acme Docs", "Docs", "Docs"},
		{"/search", "Search results | Acme Shop", "Search", "Catalog"},
		{"/account/settings", "Account settings", "Settings", "App"},
	}
	referrers = []string{"", "", "https://www.google.com/", "https://www.google.co.in/", "https://t.co/x8Kd9aQ2", "https://news.ycombinator.com/", "https://www.acme-shop.com/", "https://www.bing.com/search?q=trail+running+shoes&form=QBLH"}
	searches  = []string{"", "", "", "?utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale", "?q=trail+shoes&sort=price_asc", "?ref=producthunt", "?gclid=Cj0KCQjw3tCyBhDBARIsAEY0XNl"}
	campaigns = []struct{ name, source, medium string }{
		{"spring_sale", "newsletter", "email"},
		{"brand_search_2024", "google", "cpc"},
		{"launch_week", "twitter", "social"},
		{"retargeting_q3", "facebook", "paid_social"},
	}

	// tableEvents are the names the default preset's event_names table renames.
	tableEvents  = []string{"Signed Up", "Logged In", "Products Searched", "Product Viewed", "Plan Viewed", "Product Added", "Checkout Started", "Order Completed", "Subscription Started", "Lead Generated"}
	customEvents = []string{"Video Played", "Button Clicked", "Feature Used", "File Exported", "Invite Sent", "Settings Changed", "Trial Extended", "Coupon Applied", "Newsletter Subscribed", "Support Ticket Opened"}
	products     = []struct{ id, sku, name, brand, category string }{
		{"prod_7f3a", "TR3-M-42", "Trail Runner 3", "Acme", "Shoes/Running"},
		{"prod_19bc", "UL-JKT-BLK", "Ultralight Jacket", "Acme", "Apparel/Outerwear"},
		{"prod_a04e", "HYD-VEST-5L", "Hydration Vest 5L", "Summit", "Accessories"},
		{"prod_c55d", "SOCK-MRN-3PK", "Merino Socks (3-pack)", "Woolly", "Apparel/Socks"},
		{"prod_e812", "GPS-WTCH-2", "GPS Watch 2", "Pulse", "Electronics/Wearables"},
	}
	currencies = []string{"USD", "USD", "EUR", "GBP", "INR"}
)

type visitor struct {
	anonymousID string
	userID      string // "" when anonymous
	numericID   bool   // userId sent as a JSON number
	first, last string
	email       string
	plan        string
	company     int
	mobile      int // 0 browser, 1 iOS app, 2 Android app
	ua          string
	locale      string
	rudder      bool // RudderStack-style envelope instead of Segment's
	ascii       bool // the SDK escapes non-ASCII characters as \uXXXX
	cookie      string
	page        int // index into pages: the page the visitor is on
	referrer    string
	search      string
}

func (g *generator) visitor() *visitor {
	v := &visitor{anonymousID: g.uuid(), first: pick(g, firstNames), last: pick(g, lastNames), plan: pick(g, plans), company: g.r.IntN(len(companies))}
	if g.chance(0.7) {
		if g.chance(0.05) {
			v.userID, v.numericID = g.digits(7), true
		} else if g.chance(0.5) {
			v.userID = "usr_" + g.digits(9)
		} else {
			v.userID = g.uuid()
		}
	}
	local := asciiFold(v.first) + "." + asciiFold(v.last)
	if g.chance(0.5) {
		local = asciiFold(v.first) + g.digits(2)
	}
	v.email = local + "@" + pick(g, domains)
	switch {
	case g.chance(0.15):
		v.email = "  " + upperFirst(v.email) + " "
	case g.chance(0.15):
		v.email = upperFirst(v.email)
	}
	switch x := g.r.IntN(100); {
	case x < 15:
		v.mobile, v.ua = 1, iosUA
	case x < 28:
		v.mobile, v.ua = 2, androidUA
	default:
		v.ua = pick(g, browserUAs)
	}
	v.locale = pick(g, locales)
	v.rudder = g.chance(0.35)
	v.ascii = g.chance(0.1)
	v.cookie = string(g.hex(make([]byte, 0, 12), 12))
	v.page = g.r.IntN(len(pages))
	v.referrer, v.search = pick(g, referrers), pick(g, searches)
	return v
}

// asciiFold lower-cases a name and drops characters unfit for an email's local part.
func asciiFold(s string) string {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z':
			b = append(b, byte(r))
		case r >= 'A' && r <= 'Z':
			b = append(b, byte(r-'A'+'a'))
		case r == 'é' || r == 'è' || r == 'ë' || r == 'ễ':
			b = append(b, 'e')
		case r == 'í':
			b = append(b, 'i')
		case r == 'ü':
			b = append(b, 'u')
		case r == 'á':
			b = append(b, 'a')
		}
	}
	if len(b) == 0 {
		return "li"
	}
	return string(b)
}

// upperFirst capitalises the first letter of each part of an email ("jane.doe@example.com" →
// "Jane.Doe@Example.com"), as people type them into forms.
func upperFirst(s string) string {
	b := []byte(s)
	start := true
	for i, c := range b {
		if start && c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
		start = c == '.' || c == '@'
	}
	return string(b)
}

// event generates one event.
func (g *generator) event() []byte {
	v := g.visitor()
	kind := "track"
	switch x := g.r.IntN(100); {
	case x < 20:
		kind = "identify"
	case x < 40:
		kind = "page"
		if v.mobile != 0 {
			v.mobile, v.ua = 0, pick(g, browserUAs)
		}
	}
	e := &enc{b: make([]byte, 0, 2048), ascii: v.ascii}
	t := g.instant()
	e.beginObj()
	if v.rudder {
		e.kv("type", kind)
		if v.mobile != 0 {
			e.kv("channel", "mobile")
		} else {
			e.kv("channel", "web")
		}
	}
	e.kv("anonymousId", v.anonymousID)
	g.context(e, v, kind)
	switch kind {
	case "track":
		name := pick(g, tableEvents)
		if g.chance(0.35) {
			name = pick(g, customEvents)
		}
		e.kv("event", name)
		g.integrations(e, v)
		g.trackProperties(e, v, name)
	case "page":
		pg := pages[v.page]
		if g.chance(0.9) {
			e.kv("name", pg.name)
		}
		if g.chance(0.7) {
			e.kv("category", pg.category)
		}
		g.integrations(e, v)
		e.key("properties")
		e.beginObj()
		e.kv("path", pg.path)
		if g.chance(0.85) {
			e.kv("url", "https://www.acme-shop.com"+pg.path+v.search)
		}
		if g.chance(0.9) {
			e.kv("title", pg.title)
		}
		e.kv("referrer", v.referrer)
		e.kv("search", v.search)
		if g.chance(0.2) {
			e.kv("name", pg.name)
		}
		e.endObj()
	case "identify":
		g.integrations(e, v)
		if !v.rudder || g.chance(0.5) {
			e.key("traits")
			g.traits(e, v, true)
		}
	}
	if v.rudder {
		e.kv("messageId", g.uuid())
	} else {
		e.kv("messageId", "ajs-next-"+g.uuid())
	}
	sent := t.Add(time.Duration(g.r.IntN(4000)) * time.Millisecond)
	if v.rudder {
		g.writeTimestamp(e, "originalTimestamp", t)
		e.kv("receivedAt", iso(sent.Add(time.Duration(30+g.r.IntN(900))*time.Millisecond)))
		e.kv("rudderId", g.uuid())
		e.kv("sentAt", iso(sent))
		if g.chance(0.85) {
			g.writeTimestamp(e, "timestamp", t)
		}
	} else {
		e.kv("originalTimestamp", iso(t))
		e.kv("sentAt", iso(sent))
		g.writeTimestamp(e, "timestamp", t)
		e.kv("type", kind)
	}
	if v.userID != "" {
		if v.numericID {
			e.kn("userId", v.userID)
		} else {
			e.kv("userId", v.userID)
		}
	}
	if g.chance(0.6) {
		e.kn("version", "2")
	}
	e.endObj()
	return e.b
}

func (g *generator) integrations(e *enc, v *visitor) {
	e.key("integrations")
	e.beginObj()
	switch x := g.r.IntN(100); {
	case x < 30:
		e.key("Woopra")
		e.beginObj()
		e.kv("cookie", v.cookie)
		e.endObj()
	case x < 45:
		e.kb("All", true)
		e.kb("Woopra", true)
		e.kb("Mixpanel", false)
	case x < 55:
		e.kb("Google Analytics", false)
	}
	e.endObj()
}

func (g *generator) context(e *enc, v *visitor, kind string) {
	e.key("context")
	e.beginObj()
	if v.mobile != 0 {
		e.key("app")
		e.beginObj()
		e.kv("build", "5120")
		e.kv("name", "Acme")
		e.kv("namespace", "com.acme.app")
		e.kv("version", "5.12.0")
		e.endObj()
		e.key("device")
		e.beginObj()
		e.kv("id", g.uuid())
		if v.mobile == 1 {
			e.kv("manufacturer", "Apple")
			e.kv("model", "iPhone15,2")
			e.kv("type", "ios")
		} else {
			e.kv("manufacturer", "samsung")
			e.kv("model", "SM-S911B")
			e.kv("type", "android")
		}
		e.kb("adTrackingEnabled", g.chance(0.4))
		e.endObj()
	}
	if g.chance(0.25) {
		c := pick(g, campaigns)
		e.key("campaign")
		e.beginObj()
		e.kv("name", c.name)
		e.kv("source", c.source)
		e.kv("medium", c.medium)
		if g.chance(0.5) {
			e.kv("content", "hero_banner")
		}
		e.endObj()
	}
	if v.rudder && g.chance(0.15) {
		// RudderStack SDKs carry the Woopra cookie in context.externalId, typed woopraId.
		e.key("externalId")
		e.beginArr()
		e.beginObj()
		e.kv("id", "wp_"+v.cookie)
		e.kv("type", "woopraId")
		e.endObj()
		e.endArr()
	} else if g.chance(0.15) {
		e.key("externalIds")
		e.beginArr()
		if g.chance(0.4) {
			e.beginObj()
			e.kv("id", "GA1.1."+g.digits(10)+"."+g.digits(10))
			e.kv("type", "ga4_client_id")
			e.kv("collection", "users")
			e.kv("encoding", "none")
			e.endObj()
		}
		e.beginObj()
		e.kv("id", "wp_"+v.cookie)
		e.kv("type", "woopra")
		e.kv("collection", "users")
		e.kv("encoding", "none")
		e.endObj()
		e.endArr()
	}
	e.kv("ip", g.ip())
	e.key("library")
	e.beginObj()
	switch {
	case v.mobile == 1 && v.rudder:
		e.kv("name", "rudder-ios-library")
		e.kv("version", "1.26.2")
	case v.mobile == 1:
		e.kv("name", "analytics-ios")
		e.kv("version", "4.1.8")
	case v.mobile == 2 && v.rudder:
		e.kv("name", "com.rudderstack.android.sdk.core")
		e.kv("version", "1.21.2")
	case v.mobile == 2:
		e.kv("name", "analytics-android")
		e.kv("version", "4.11.3")
	case v.rudder:
		e.kv("name", "RudderLabs JavaScript SDK")
		e.kv("version", "3.0.3")
	default:
		e.kv("name", "analytics.js")
		e.kv("version", "next-1.64.0")
	}
	e.endObj()
	e.kv("locale", v.locale)
	if v.mobile != 0 {
		e.key("network")
		e.beginObj()
		e.kb("wifi", g.chance(0.6))
		e.kv("carrier", pick(g, []string{"T-Mobile", "Vodafone", "Jio", "AT&T"}))
		e.endObj()
		e.key("os")
		e.beginObj()
		if v.mobile == 1 {
			e.kv("name", "iOS")
			e.kv("version", "17.4.1")
		} else {
			e.kv("name", "Android")
			e.kv("version", "13")
		}
		e.endObj()
		e.key("screen")
		e.beginObj()
		e.kn("width", "1179")
		e.kn("height", "2556")
		e.kn("density", "3")
		e.endObj()
	} else {
		pg := pages[v.page]
		ref, search := v.referrer, v.search
		e.key("page")
		e.beginObj()
		e.kv("path", pg.path)
		e.kv("referrer", ref)
		e.kv("search", search)
		e.kv("title", pg.title)
		e.kv("url", "https://www.acme-shop.com"+pg.path+search)
		e.endObj()
	}
	e.kv("timezone", pick(g, []string{"America/New_York", "Europe/Berlin", "Asia/Kolkata", "America/Los_Angeles", "Asia/Tokyo"}))
	known := v.userID != "" || g.chance(0.4)
	if kind == "identify" && v.rudder || kind != "identify" && known && g.chance(0.85) {
		e.key("traits")
		g.traits(e, v, kind == "identify")
	}
	e.kv("userAgent", v.ua)
	e.endObj()
}

func (g *generator) ip() string {
	if g.chance(0.1) {
		return "2001:db8:" + string(g.hex(nil, 4)) + "::" + string(g.hex(nil, 2))
	}
	return strconv.Itoa(1+g.r.IntN(223)) + "." + strconv.Itoa(g.r.IntN(256)) + "." + strconv.Itoa(g.r.IntN(256)) + "." + strconv.Itoa(1+g.r.IntN(254))
}

// traits writes a visitor's traits; full adds the profile an identify call carries.
func (g *generator) traits(e *enc, v *visitor, full bool) {
	e.beginObj()
	if g.chance(0.92) {
		e.kv("email", v.email)
	}
	if g.chance(0.9) {
		e.kv("name", v.first+" "+v.last)
	}
	e.kv("firstName", v.first)
	e.kv("lastName", v.last)
	e.kv("plan", v.plan)
	if full {
		e.key("company")
		e.beginObj()
		e.kv("name", companies[v.company])
		e.kv("id", "cmp_"+g.digits(6))
		e.kv("industry", pick(g, industries))
		e.kn("employees", strconv.Itoa(5+g.r.IntN(5000)))
		e.endObj()
		e.kv("created_at", iso(year2024.Add(-time.Duration(g.r.IntN(900*24))*time.Hour)))
		i := g.r.IntN(len(cities))
		e.key("address")
		e.beginObj()
		e.kv("city", cities[i])
		e.kv("country", countries[i])
		e.endObj()
		e.kn("logins", strconv.Itoa(g.r.IntN(400)))
		e.kb("newsletter", g.chance(0.5))
		if g.chance(0.1) {
			e.kv("password", "hunter2")
		}
		if g.chance(0.2) {
			e.kv("phone", "+91 98"+g.digits(8))
		}
		if g.chance(0.3) && v.userID != "" {
			e.kv("id", v.userID)
		}
	} else if g.chance(0.4) {
		e.kn("logins", strconv.Itoa(g.r.IntN(400)))
	}
	e.endObj()
}

func (g *generator) product(e *enc, withQty bool) {
	p := pick(g, products)
	e.beginObj()
	e.kv("product_id", p.id)
	e.kv("sku", p.sku)
	e.kv("name", p.name)
	e.kv("brand", p.brand)
	e.kv("category", p.category)
	e.kn("price", g.money(300))
	if withQty {
		e.kn("quantity", strconv.Itoa(1+g.r.IntN(3)))
	}
	e.endObj()
}

func (g *generator) trackProperties(e *enc, v *visitor, name string) {
	e.key("properties")
	e.beginObj()
	cur := pick(g, currencies)
	switch name {
	case "Order Completed", "Checkout Started":
		e.kv("order_id", "ord_"+g.digits(8))
		e.kv("checkout_id", g.uuid())
		e.kn("total", g.money(600))
		if name == "Order Completed" || g.chance(0.5) {
			e.kn("revenue", g.money(500))
		}
		e.kn("shipping", g.money(20))
		e.kn("tax", g.money(40))
		e.kn("discount", "0")
		if g.chance(0.3) {
			e.kv("coupon", "SPRING24")
		}
		e.kv("currency", cur)
		e.key("products")
		e.beginArr()
		for i, n := 0, 1+g.r.IntN(3); i < n; i++ {
			g.product(e, true)
		}
		e.endArr()
	case "Product Viewed", "Product Added":
		p := pick(g, products)
		e.kv("product_id", p.id)
		e.kv("sku", p.sku)
		e.kv("category", p.category)
		e.kv("name", p.name)
		e.kv("brand", p.brand)
		e.kv("variant", pick(g, []string{"Black", "Blue / 42", "Trail Green"}))
		e.kn("price", g.money(300))
		e.kn("quantity", "1")
		e.kv("currency", cur)
		e.kn("position", strconv.Itoa(1+g.r.IntN(24)))
		e.kv("url", "https://www.acme-shop.com/products/"+p.id)
		e.kv("image_url", "https://cdn.acme-shop.com/img/"+p.sku+".jpg")
		if name == "Product Added" {
			e.kv("cart_id", "cart_"+g.digits(7))
		}
	case "Signed Up", "Lead Generated":
		e.kv("method", pick(g, []string{"email", "google", "github"}))
		e.kv("plan", v.plan)
		if g.chance(0.6) {
			e.kv("email", v.email)
		}
		if g.chance(0.25) {
			e.kv("password", "correct horse battery staple")
		}
		if name == "Lead Generated" {
			e.kv("form_id", "form_"+g.digits(4))
			e.kn("value", g.money(100))
		}
	case "Products Searched":
		e.kv("query", pick(g, []string{"trail shoes", "waterproof jacket", "gps watch", "socks \"merino\""}))
		e.kn("results", strconv.Itoa(g.r.IntN(120)))
	case "Plan Viewed", "Subscription Started":
		e.kv("plan", v.plan)
		e.kv("billing_cycle", pick(g, []string{"monthly", "annual"}))
		e.kn("mrr", g.money(400))
		if name == "Subscription Started" {
			e.kn("revenue", g.money(4000))
			e.kv("currency", cur)
		}
	case "Logged In":
		e.kv("method", pick(g, []string{"password", "sso", "magic_link"}))
		e.kb("remember_me", g.chance(0.5))
	default:
		e.kv("label", pick(g, []string{"hero_cta", "navbar", "footer", "modal"}))
		e.kn("duration_ms", strconv.Itoa(g.r.IntN(90000)))
		e.kv("page_path", pick(g, pages).path)
		if g.chance(0.3) {
			e.kv("user_password_hint", "first pet")
		}
	}
	// Properties every app sends, in varying amounts.
	e.kb("nonInteraction", g.chance(0.2))
	if g.chance(0.7) {
		e.key("experiment")
		e.beginObj()
		e.kv("id", "exp_"+g.digits(3))
		e.kv("variant", pick(g, []string{"A", "B", "control"}))
		if g.chance(0.5) {
			e.key("meta")
			e.beginObj()
			e.kn("bucket", strconv.Itoa(g.r.IntN(100)))
			e.key("flags")
			e.beginObj()
			e.kb("new_checkout", g.chance(0.5))
			e.endObj()
			e.endObj()
		}
		e.endObj()
	}
	if g.chance(0.6) {
		e.key("tags")
		e.beginArr()
		for i, n := 0, 1+g.r.IntN(3); i < n; i++ {
			e.str(pick(g, []string{"summer", "vip", "beta", "mobile-first", "spring sale"}))
		}
		e.endArr()
	}
	if g.chance(0.4) {
		// Integers past 2^53 and 64-bit ids must survive as written.
		e.kn("account_id", pick(g, []string{"9007199254740993", "1234567890123456789", "18446744073709551615"}))
	}
	if g.chance(0.3) {
		e.kn("ratio", "0."+g.digits(2))
	}
	if g.chance(0.15) {
		e.key("note")
		e.null()
	}
	if g.chance(0.1) {
		e.kv("comment", "Great product!\nWould buy again — 5★")
	}
	e.endObj()
}

// enc writes compact JSON with keys in the order they are added.
type enc struct {
	b        []byte
	comma    []bool // per open container: whether the next member needs a comma
	afterKey bool
	ascii    bool // escape non-ASCII characters as \uXXXX, as some SDKs do
}

func (e *enc) sep() {
	if e.afterKey {
		e.afterKey = false
		return
	}
	if n := len(e.comma); n > 0 {
		if e.comma[n-1] {
			e.b = append(e.b, ',')
		}
		e.comma[n-1] = true
	}
}

func (e *enc) beginObj() { e.sep(); e.b = append(e.b, '{'); e.comma = append(e.comma, false) }
func (e *enc) endObj()   { e.b = append(e.b, '}'); e.comma = e.comma[:len(e.comma)-1] }
func (e *enc) beginArr() { e.sep(); e.b = append(e.b, '['); e.comma = append(e.comma, false) }
func (e *enc) endArr()   { e.b = append(e.b, ']'); e.comma = e.comma[:len(e.comma)-1] }

func (e *enc) key(k string) {
	e.sep()
	e.quote(k)
	e.b = append(e.b, ':')
	e.afterKey = true
}

func (e *enc) str(s string) { e.sep(); e.quote(s) }
func (e *enc) num(s string) { e.sep(); e.b = append(e.b, s...) }
func (e *enc) null()        { e.sep(); e.b = append(e.b, "null"...) }

func (e *enc) kv(k, s string) { e.key(k); e.str(s) }
func (e *enc) kn(k, n string) { e.key(k); e.num(n) }
func (e *enc) kb(k string, b bool) {
	e.key(k)
	e.num(strconv.FormatBool(b))
}

func (e *enc) quote(s string) {
	const hexDigits = "0123456789abcdef"
	e.b = append(e.b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if !e.ascii {
				e.b = append(e.b, s[i:i+size]...)
			} else if r > 0xffff {
				r -= 0x10000
				hi, lo := 0xd800+(r>>10), 0xdc00+(r&0x3ff)
				e.b = append(e.b, '\\', 'u', hexDigits[hi>>12], hexDigits[hi>>8&15], hexDigits[hi>>4&15], hexDigits[hi&15])
				e.b = append(e.b, '\\', 'u', hexDigits[lo>>12], hexDigits[lo>>8&15], hexDigits[lo>>4&15], hexDigits[lo&15])
			} else {
				e.b = append(e.b, '\\', 'u', hexDigits[r>>12], hexDigits[r>>8&15], hexDigits[r>>4&15], hexDigits[r&15])
			}
			i += size
			continue
		}
		switch c {
		case '"', '\\':
			e.b = append(e.b, '\\', c)
		case '\n':
			e.b = append(e.b, '\\', 'n')
		case '\t':
			e.b = append(e.b, '\\', 't')
		case '\r':
			e.b = append(e.b, '\\', 'r')
		default:
			if c < 0x20 {
				e.b = append(e.b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
			} else {
				e.b = append(e.b, c)
			}
		}
		i++
	}
	e.b = append(e.b, '"')
}
