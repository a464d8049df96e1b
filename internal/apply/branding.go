package apply

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/brandasset"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/store"
)

// brandBlobPrefix is where branding assets live in the store.
const brandBlobPrefix = "branding/"

// seedBranding stores a declared branding's files as content-addressed
// blobs (a changed file gets a new name, so caches never serve a stale
// one) and returns the org's branding record. Each file is checked by its
// bytes as config validation checks it, on the bytes that are stored: a
// file swapped after validation is refused too.
func seedBranding(ctx context.Context, st store.Store, cb *config.Branding) (*store.Branding, error) {
	read := func(key, file string) ([]byte, error) {
		b, err := brandasset.ReadFile(key, file)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		if err := brandasset.Check(key, file, b); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		return b, nil
	}
	put := func(key, file string) (string, error) {
		if file == "" {
			return "", nil
		}
		b, err := read(key, file)
		if err != nil {
			return "", err
		}
		return putBrandAsset(ctx, st, b, strings.ToLower(filepath.Ext(file)))
	}
	out := &store.Branding{Heading: cb.Texts.Heading, Intro: cb.Texts.Intro, Footer: cb.Texts.Footer,
		Colors: store.BrandColors{Primary: strings.ToLower(cb.Colors.Primary), Background: strings.ToLower(cb.Colors.Background), Text: strings.ToLower(cb.Colors.Text)}}
	var err error
	if out.Logo, err = put("logo", cb.Logo); err != nil {
		return nil, err
	}
	if out.Favicon, err = put("favicon", cb.Favicon); err != nil {
		return nil, err
	}
	if out.Font, err = put("font", cb.Font); err != nil {
		return nil, err
	}
	if out.CustomCSS, err = put("css", cb.CSS); err != nil {
		return nil, err
	}
	if err := ComposeBrandCSS(ctx, st, out); err != nil {
		return nil, err
	}
	return out, nil
}

// PutBrandAsset stores a branding file, checked by its bytes as the
// config's are (key: logo, favicon, font or css; ext its extension), and
// returns its content-addressed name.
func PutBrandAsset(ctx context.Context, st store.Store, key, ext string, b []byte) (string, error) {
	if err := brandasset.Check(key, key+ext, b); err != nil {
		return "", err
	}
	return putBrandAsset(ctx, st, b, ext)
}

// ComposeBrandCSS makes the org's stylesheet from its colors, font and
// own CSS (b.CSS; "" when there is nothing to style): the one way both
// the config file and the admin API brand an org.
func ComposeBrandCSS(ctx context.Context, st store.Store, b *store.Branding) error {
	css, err := BrandCSS(ctx, st, b)
	if err != nil {
		return err
	}
	b.CSS = ""
	if css != "" {
		name, err := putBrandAsset(ctx, st, []byte(css), ".css")
		if err != nil {
			return err
		}
		b.CSS = name
	}
	return nil
}

// BrandCSS is the stylesheet b's colors, font and own CSS make, without
// storing it (the portal's preview of unsaved colors).
func BrandCSS(ctx context.Context, st store.Store, b *store.Branding) (string, error) {
	var css strings.Builder
	vars := []string{}
	for _, v := range []struct{ name, value string }{{"--accent", b.Colors.Primary}, {"--bg", b.Colors.Background}, {"--fg", b.Colors.Text}} {
		if v.value != "" {
			vars = append(vars, v.name+": "+strings.ToLower(v.value))
		}
	}
	if len(vars) > 0 {
		fmt.Fprintf(&css, ":root { %s; }\n", strings.Join(vars, "; "))
	}
	if b.Font != "" {
		fmt.Fprintf(&css, "@font-face { font-family: \"gatehouse-brand\"; src: url(%s%s) format(%q); font-display: swap; }\n",
			web.BrandPrefix, b.Font, brandasset.FontFormat(filepath.Ext(b.Font)))
		css.WriteString("body { font-family: \"gatehouse-brand\", system-ui, sans-serif; }\n")
	}
	if b.CustomCSS != "" {
		custom, err := st.GetBlob(ctx, brandBlobPrefix+b.CustomCSS)
		if err != nil {
			return "", fmt.Errorf("branding: the org's CSS: %w", err)
		}
		css.WriteString("/* the org's own CSS */\n")
		css.Write(custom.Value)
	}
	return css.String(), nil
}

func putBrandAsset(ctx context.Context, st store.Store, b []byte, ext string) (string, error) {
	name := web.AssetName(b, ext)
	if err := st.PutBlob(ctx, brandBlobPrefix+name, b); err != nil {
		return "", fmt.Errorf("branding: %w", err)
	}
	return name, nil
}

// brandAssets serves branding assets from the store, keeping them in
// memory once read: their names are their contents' hashes, so a copy
// never goes stale. At most maxBrandCache are kept.
func BrandAssets(st store.Store) web.BlobSource {
	const maxBrandCache = 512
	var mu sync.Mutex
	cache := map[string][]byte{}
	return func(ctx context.Context, name string) ([]byte, error) {
		mu.Lock()
		b, ok := cache[name]
		mu.Unlock()
		if ok {
			return b, nil
		}
		blob, err := st.GetBlob(ctx, brandBlobPrefix+name)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		if len(cache) >= maxBrandCache {
			clear(cache)
		}
		cache[name] = blob.Value
		mu.Unlock()
		return blob.Value, nil
	}
}
