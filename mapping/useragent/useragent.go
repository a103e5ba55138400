// Package useragent names the browser of a User-Agent string the way ua-parser-js 1.x does
// (the parser RudderStack's transformers use), on top of github.com/mileusna/useragent.
//
// mileusna/useragent does the tokenising and the browser detection; this package translates
// its names into ua-parser-js 1.0.x names ("Samsung Browser" → "Samsung Internet",
// "Internet Explorer" → "IE", Safari on an iPhone → "Mobile Safari", an Android WebView →
// "Chrome WebView", ...) and, where ua-parser-js reads the version from a different token,
// re-reads it with ua-parser-js's own pattern. Versions are the full version strings
// ("86.0.4240.111"), never just the major number.
//
// Deliberate limits:
//   - Only mainstream browsers and the common in-app browsers are named. For anything else
//     (command-line clients, HTTP libraries, Dalvik, unknown or exotic browsers) Browser
//     returns "", "", where ua-parser-js sometimes still finds a name.
//   - Agents the library flags as bots (Googlebot, Bingbot, Headless Chrome, link unfurlers,
//     anything carrying a +http:// URL) give "", "" even when ua-parser-js would name the
//     Chrome build they embed.
//   - ua-parser-js 1.x names Chrome and Firefox on iOS plain "Chrome" and "Firefox" (the
//     "Mobile Chrome" and "Mobile Firefox" names arrived in ua-parser-js 2.0), and so does this
//     package.
package useragent

import (
	"regexp"
	"strings"

	ua "github.com/mileusna/useragent"
)

// The patterns below are ua-parser-js 1.0.40's own, for the cases where its name or version
// depends on more than the token mileusna/useragent keys on.
var (
	// Chrome WebView: " wv)" before the Chrome token (Android System WebView).
	rxWebView = regexp.MustCompile(`(?i) wv\).+chrome/([\w.]+)`)
	// Android Browser: Android with a Version/ token, e.g. pre-Lollipop WebViews.
	rxAndroidBrowser = regexp.MustCompile(`(?i)droid.+ version/([\w.]+)\b.+(?:mobile safari|safari)`)
	// Mobile Safari: Version/x ... Mobile/build Safari (iPhone, iPad, iPod).
	rxMobileSafari = regexp.MustCompile(`(?i)version/([\w.,]+) .*mobile/\w+ (safari)`)
	// Safari & Safari Mobile without a Mobile/build token.
	rxSafari = regexp.MustCompile(`(?i)version/([\w(.|,)]+) .*(mobile ?safari|safari)`)
	// Presto Opera reports its real version in Version/.
	rxOpera = regexp.MustCompile(`(?i)opera(?:.+version/|[/ ]+)([\w.]+)`)
	// IE 11 announces itself only with Trident and rv:.
	rxIE11 = regexp.MustCompile(`(?i)trident.+rv[: ]([\w.]{1,9})\b.+like gecko`)
	// Facebook's in-app browser; without FBAV there is no version.
	rxFacebook = regexp.MustCompile(`(?i);fbav/([\w.]+);`)
	// MIUI Browser's version stops at the first character outside [\w.].
	rxMIUI = regexp.MustCompile(`(?i)miuibrowser/([\w.]+)`)
	// Edge in any of its spellings (Edge/, Edg/, EdgA/, EdgiOS/).
	rxEdge = regexp.MustCompile(`(?i)edg(?:e|ios|a)?/([\w.]+)`)
	// Gecko forks that keep a Firefox token but end with their own.
	rxGeckoFork = regexp.MustCompile(`(?i)(seamonkey|k-meleon|icecat|iceape|firebird|phoenix|palemoon|basilisk|waterfox)/([-\w.]+)$`)
	// The Google app on iOS.
	rxGSA = regexp.MustCompile(`(?i)\bgsa/([\w.]+) .*safari/`)
	// DuckDuckGo's macOS and iOS browsers add Ddg/ to a Safari agent.
	rxDDG = regexp.MustCompile(`(?i)\bddg/[\w.]+`)
	// UC Browser, which also carries a Chrome token.
	rxUC = regexp.MustCompile(`(?i)(?:\buc? ?browser|(?:juc.+)ucweb)[/ ]?([\w.]+)`)
)

// Browser returns the browser name and full version ua-parser-js 1.x reports for the
// User-Agent string s, or "", "" when it is empty, a bot, a non-browser client or a browser
// this package does not name. Either both results are set or neither is.
func Browser(s string) (name, version string) {
	if strings.TrimSpace(s) == "" {
		return "", ""
	}
	p := ua.Parse(s)
	if p.Bot {
		return "", ""
	}
	name, version = translate(s, p)
	if name == "" || version == "" {
		return "", ""
	}
	return name, version
}

// translate maps a mileusna/useragent result to the ua-parser-js name and version.
func translate(s string, p ua.UserAgent) (string, string) {
	switch p.Name {
	case ua.Chrome:
		// ua-parser-js tests UC Browser, then the WebView marker, then the Android Browser
		// pattern, before it settles on Chrome.
		if m := rxUC.FindStringSubmatch(s); m != nil {
			return "UCBrowser", m[1]
		}
		if m := rxWebView.FindStringSubmatch(s); m != nil {
			return "Chrome WebView", m[1]
		}
		if m := rxAndroidBrowser.FindStringSubmatch(s); m != nil {
			return "Android Browser", m[1]
		}
		return "Chrome", p.Version
	case ua.Safari:
		if m := rxMobileSafari.FindStringSubmatch(s); m != nil {
			return "Mobile Safari", m[1]
		}
		if m := rxSafari.FindStringSubmatch(s); m != nil {
			if rxDDG.MatchString(s) {
				return "DuckDuckGo", m[1] // ua-parser-js tests Ddg/ before Safari
			}
			return m[2], m[1] // "Safari" or "Mobile Safari", spelled as in the agent
		}
		if m := rxGSA.FindStringSubmatch(s); m != nil {
			return "GSA", m[1]
		}
		return "", "" // WebKit without a Version/ token: ua-parser-js falls back to WebKit names
	case ua.Firefox:
		if m := rxGeckoFork.FindStringSubmatch(s); m != nil {
			return m[1], m[2] // SeaMonkey, Waterfox, Pale Moon, ... name as in the agent
		}
		return "Firefox", p.Version
	case ua.Edge:
		return "Edge", p.Version
	case ua.Opera:
		if m := rxEdge.FindStringSubmatch(s); m != nil {
			return "Edge", m[1] // ua-parser-js tests Edge before Opera
		}
		if strings.Contains(s, "OPR/") {
			return "Opera", p.Version
		}
		if m := rxOpera.FindStringSubmatch(s); m != nil {
			return "Opera", m[1]
		}
		return "Opera", p.Version
	case ua.OperaMini, ua.OperaTouch, ua.Vivaldi, "Chromium", "Brave", "Whale", "Electron":
		return p.Name, p.Version
	case "OPX":
		return "Opera GX", p.Version
	case ua.SamsungBrowser:
		return "Samsung Internet", p.Version
	case ua.InternetExplorer:
		return "IE", p.Version
	case "Trident":
		if m := rxIE11.FindStringSubmatch(s); m != nil {
			return "IE", m[1]
		}
	case "Android browser":
		return "Android Browser", p.Version
	case ua.FacebookApp:
		if m := rxFacebook.FindStringSubmatch(s); m != nil {
			return "Facebook", m[1]
		}
	case ua.InstagramApp:
		return "Instagram", p.Version
	case "YaBrowser":
		return "Yandex", p.Version
	case "Miui Browser":
		if m := rxMIUI.FindStringSubmatch(s); m != nil {
			return "MIUI Browser", m[1]
		}
	case "Huawei Browser":
		return "Huawei Browser", p.Version
	case "Mobile DuckDuckGo":
		return "DuckDuckGo", p.Version
	}
	return "", ""
}
