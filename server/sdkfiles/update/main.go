// Command update fetches the pinned browser SDK packages with npm, checks their integrity
// against the checksums pinned here, and writes the files the relay serves into
// server/sdkfiles/files (gzip-compressed, with the packages' licences and a SHA256SUMS of what
// is served). Run it from the repository's root, after changing a version and its integrity:
//
//	go generate ./server/sdkfiles
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// pkg is one pinned npm package and the files taken from it.
type pkg struct {
	name, version, integrity string // integrity: npm's sha512 of the package tarball
	licence                  string // the licence file in the tarball
	licenceAs                string // its name under files/
	// pick maps a file of the tarball (below package/) to the name it is served as, or ""
	// when the file is not served.
	pick func(name string) string
	// wrap rewrites a picked file (nil: served as it is).
	wrap func(version, served string, content []byte) []byte
}

var pkgs = []pkg{
	{
		name: "@segment/analytics-next", version: "1.84.3",
		integrity: "sha512-5l7cPBzScxhfJ0zdcKQI4daDvMIWWUk7hClT1xGRelnHUltIEoQ9w8+ZpFPoWJMpX8D7IA1nVAfJbpiKi3XaKw==",
		licence:   "LICENSE.MD", licenceAs: "LICENSE-segment-analytics-next",
		pick: func(name string) string {
			dir, file := path.Split(name)
			if dir != "dist/umd/" {
				return ""
			}
			switch {
			case file == "standalone.js": // the CDN's analytics.min.js
				return "segment/analytics.min.js"
			case strings.Contains(file, ".bundle.") && strings.HasSuffix(file, ".js"): // its chunks
				return "segment/bundles/" + file
			}
			return ""
		},
	},
	{
		name: "@rudderstack/analytics-js", version: "3.34.1",
		integrity: "sha512-cci768CvaM64Wr/MDDtLF8K49aPy7TwwfwL9G1a2SSfgwL4XfVfGNVT//Mv8yph0a14pPc/Nf5HDWhVjAD5vQg==",
		licence:   "LICENSE.md", licenceAs: "LICENSE-rudderstack-analytics-js",
		pick: func(name string) string {
			switch name {
			case "dist/npm/modern/bundled/umd/index.js":
				return "rudderstack/modern/rsa.min.js"
			case "dist/npm/legacy/bundled/umd/index.js":
				return "rudderstack/legacy/rsa.min.js"
			}
			return ""
		},
		wrap: rudderCDN,
	},
}

// rudderCDN makes the npm package's bundled UMD build behave as the CDN's rsa.min.js: the UMD
// build replaces window.rudderanalytics with its exports, so the loading snippet's buffer of
// calls is kept aside and handed to a RudderAnalytics, which replays it and takes the global's
// place, as the CDN build does.
func rudderCDN(version, served string, content []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "/* %s: @rudderstack/analytics-js %s (MIT licence), its npm package's bundled UMD build run as the CDN's rsa.min.js. */\n", served, version)
	b.WriteString("(function () {\nvar preloaded = window.rudderanalytics;\n")
	b.Write(content)
	b.WriteString("\n;var RudderAnalytics = window.rudderanalytics.RudderAnalytics;\nwindow.rudderanalytics = preloaded;\nnew RudderAnalytics();\n})();\n")
	return b.Bytes()
}

func main() {
	if err := run(filepath.Join("server", "sdkfiles", "files")); err != nil {
		fmt.Fprintln(os.Stderr, "update:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	if _, err := os.Stat(filepath.Join("server", "sdkfiles")); err != nil {
		if _, err2 := os.Stat("sdkfiles.go"); err2 != nil {
			return fmt.Errorf("run it from the repository's root (go generate ./server/sdkfiles does): %v", err)
		}
		out = "files" // run by go generate in server/sdkfiles
	}
	tmp, err := os.MkdirTemp("", "woorelay-sdkfiles-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	sums := map[string]string{}
	for _, p := range pkgs {
		tgz, err := npmPack(tmp, p)
		if err != nil {
			return err
		}
		if err := extract(tgz, p, out, sums); err != nil {
			return fmt.Errorf("%s@%s: %v", p.name, p.version, err)
		}
	}
	names := make([]string, 0, len(sums))
	for n := range sums {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s  %s\n", sums[n], n)
	}
	return os.WriteFile(filepath.Join(out, "SHA256SUMS"), []byte(b.String()), 0o644)
}

// npmPack downloads the package's tarball with npm pack and checks it against the pinned
// integrity.
func npmPack(dir string, p pkg) ([]byte, error) {
	cmd := exec.Command("npm", "pack", "--json", "--pack-destination", dir, p.name+"@"+p.version)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	outb, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("npm pack %s@%s: %v (npm must be installed and reach its registry)", p.name, p.version, err)
	}
	var packed []struct {
		Filename  string `json:"filename"`
		Integrity string `json:"integrity"`
	}
	if err := json.Unmarshal(outb, &packed); err != nil || len(packed) != 1 {
		return nil, fmt.Errorf("npm pack %s@%s: unexpected answer %q (%v)", p.name, p.version, outb, err)
	}
	tgz, err := os.ReadFile(filepath.Join(dir, packed[0].Filename))
	if err != nil {
		return nil, err
	}
	sum := sha512.Sum512(tgz)
	if got := "sha512-" + base64.StdEncoding.EncodeToString(sum[:]); got != p.integrity {
		return nil, fmt.Errorf("%s@%s: the tarball's checksum is %s, pinned %s; a new version needs its integrity pinned in server/sdkfiles/update", p.name, p.version, got, p.integrity)
	}
	return tgz, nil
}

// extract writes the package's licence and its picked files, gzip-compressed, under out.
func extract(tgz []byte, p pkg, out string, sums map[string]string) error {
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	picked, licensed := 0, false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(h.Name, "package/")
		served := p.pick(name)
		if name == p.licence {
			served = p.licenceAs
		}
		if served == "" {
			continue
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		dst := filepath.Join(out, filepath.FromSlash(served))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if served == p.licenceAs {
			licensed = true
			if err := os.WriteFile(dst, content, 0o644); err != nil {
				return err
			}
			continue
		}
		if p.wrap != nil {
			content = p.wrap(p.version, served, content)
		}
		sum := sha256.Sum256(content)
		sums[served] = hex.EncodeToString(sum[:])
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		zw.Write(content)
		if err := zw.Close(); err != nil {
			return err
		}
		if err := os.WriteFile(dst+".gz", gz.Bytes(), 0o644); err != nil {
			return err
		}
		picked++
	}
	if !licensed {
		return fmt.Errorf("no licence file %s in the package; adjust licence in server/sdkfiles/update", p.licence)
	}
	if picked == 0 {
		return fmt.Errorf("no file picked: the package's layout changed; adjust pick in server/sdkfiles/update")
	}
	return nil
}
