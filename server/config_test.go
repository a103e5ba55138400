package server

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadConfig(t *testing.T) {
	t.Setenv("WOORELAY_TEST_BACKEND_KEY", keyBackend)
	cfg, err := LoadConfig("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PublicURL != "https://ingest.example.com" || len(cfg.Sources) != 2 {
		t.Fatalf("got %+v", cfg)
	}
	if got := fmt.Sprint(cfg.TrustedProxies); got != "[127.0.0.1/32 10.0.0.0/8 2001:db8::/32 192.168.0.0/16]" {
		t.Errorf("trusted_proxies = %s, want a bare address as one host and an IPv4-mapped CIDR as IPv4", got)
	}
	web, shop := cfg.Sources[0], cfg.Sources[1]
	if web.Name != "website" || web.WriteKey != keyWeb || web.Preset != "default" || web.Settings["project"] != "example.com" {
		t.Errorf("website: %+v", web)
	}
	if want := filepath.Join("testdata", "mappings"); len(web.Mappings) != 1 || web.Mappings[0] != want {
		t.Errorf("website mappings = %v, want [%s] (relative to the config file)", web.Mappings, want)
	}
	if shop.WriteKey != keyBackend || shop.WriteKeyEnv != "WOORELAY_TEST_BACKEND_KEY" || len(shop.AllowedOrigins) != 1 {
		t.Errorf("shop: %+v", shop)
	}

	var seen []string
	srcs, err := cfg.Compile(func(name string, settings map[string]string) {
		seen = append(seen, name)
		settings["base_url"] = "http://emulator.test"
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(seen, ",") != "website,shop" || len(srcs) != 2 {
		t.Fatalf("adjust saw %v, sources %d", seen, len(srcs))
	}
	if _, changed := cfg.Sources[0].Settings["base_url"]; changed {
		t.Error("adjust changed the configuration's own settings")
	}
	opts := cfg.Options(srcs, &memStore{})
	if opts.PublicURL != "https://ingest.example.com" || len(opts.Sources) != 2 || opts.Store == nil || len(opts.TrustedProxies) != 4 {
		t.Errorf("Options: %+v", opts)
	}
	res := srcs[0].Program.Run([]byte(`{"type":"track","event":"Account Created","anonymousId":"a1","properties":{"plan":"pro"}}`), testNow)
	if len(res.Requests) != 1 || !strings.HasPrefix(res.Requests[0].URL, "http://emulator.test/track/ce?") || !strings.Contains(res.Requests[0].URL, "event=signup") {
		t.Errorf("the adjusted settings and the mapping folder should apply: %+v", res)
	}
}

func TestDevConfig(t *testing.T) {
	cfg := DevConfig()
	if _, err := cfg.Compile(nil); err == nil || !strings.Contains(err.Error(), "project") {
		t.Errorf("compiling the dev source without a project should say so, got %v", err)
	}
	srcs, err := cfg.Compile(func(_ string, s map[string]string) { s["project"] = "sandbox.example.com" })
	if err != nil {
		t.Fatal(err)
	}
	if len(srcs) != 1 || !srcs[0].AnyKey || srcs[0].Program.Name != "default" {
		t.Fatalf("got %+v", srcs)
	}
	s, err := New(Options{Sources: srcs, Store: &memStore{}})
	if err != nil {
		t.Fatal(err)
	}
	if s.lookup("anything") != srcs[0] || s.lookup("") != nil {
		t.Error("the dev source should accept any non-empty write key")
	}
}

// TestBadConfig checks every testdata/bad_*.yaml reports its position and code.
func TestBadConfig(t *testing.T) {
	os.Unsetenv("WOORELAY_TEST_UNSET_VARIABLE")
	cases := map[string]string{
		"bad_unknown_key.yaml":         `testdata/bad_unknown_key.yaml:5:5: unknown_key: unknown key "setings" (hint: did you mean "settings"?)`,
		"bad_missing_write_key.yaml":   `testdata/bad_missing_write_key.yaml:2:5: missing_key: source "website" has no write_key`,
		"bad_duplicate_write_key.yaml": `testdata/bad_duplicate_write_key.yaml:7:16: duplicate: source "backend" uses the same write key as the source at line 2`,
		"bad_unknown_preset.yaml":      `testdata/bad_unknown_preset.yaml:4:13: unknown_preset: there is no built-in preset "defualt"`,
		"bad_mapping_folder.yaml":      `testdata/bad_mapping_folder.yaml:6:16: bad_mappings_folder: mapping folder "no/such/folder"`,
		"bad_write_key_env.yaml":       `testdata/bad_write_key_env.yaml:3:20: missing_key: environment variable WOORELAY_TEST_UNSET_VARIABLE`,
		"bad_duplicate_name.yaml":      `testdata/bad_duplicate_name.yaml:6:5: duplicate: source name "website" is already used at line 2`,
		"bad_setting.yaml":             `testdata/bad_setting.yaml:2:5 (settings of source website): unknown_setting:`,
		"bad_origin.yaml":              `testdata/bad_origin.yaml:1:19: bad_value: allowed origin "https://www.example.com/"`,
		"bad_yaml.yaml":                `testdata/bad_yaml.yaml:2:1: yaml_syntax: `,
		"bad_no_sources.yaml":          `testdata/bad_no_sources.yaml:1:1: missing_key: the configuration has no sources:`,
		"bad_trusted_proxy.yaml":       `testdata/bad_trusted_proxy.yaml:1:31: bad_value: trusted proxy "proxy.internal" is not an IP address or CIDR (hint: write an address like 127.0.0.1`,
		"bad_queue.yaml":               `testdata/bad_queue.yaml:2:33: bad_value: queue url "http://nats.internal:4222" is not a nats:// URL (hint: write a NATS server as nats://host:4222`,
		"bad_queue_key.yaml":           `testdata/bad_queue_key.yaml:3:3: unknown_key: unknown key "partitoins" (hint: did you mean "partitions"?)`,
	}
	files, _ := filepath.Glob("testdata/bad_*.yaml")
	if len(files) != len(cases) {
		t.Errorf("%d bad_*.yaml files, %d cases: give every file a case", len(files), len(cases))
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := LoadConfig(filepath.Join("testdata", name))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("got  %s\nwant %s...", err, want)
			}
		})
	}
}
