package debugger

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"sync"

	"github.com/labstack/echo/v4"
)

// favicon is the debugger's icon as /favicon.ico: a 32×32 PNG (a white "w" on the page's
// accent blue) in an ICO container, drawn once.
var favicon = sync.OnceValue(func() []byte {
	const n = 32
	img := image.NewNRGBA(image.Rect(0, 0, n, n))
	accent := color.NRGBA{0x35, 0x59, 0xe0, 0xff}
	for y := range n {
		for x := range n {
			// a rounded square
			dx, dy := min(x, n-1-x), min(y, n-1-y)
			if dx+dy >= 3 {
				img.Set(x, y, accent)
			}
		}
	}
	// the "w": four strokes from the top to the bottom and back
	stroke := func(x0, x1 int) {
		for y := 9; y <= 23; y++ {
			x := x0 + (x1-x0)*(y-9)/14
			for w := range 3 {
				img.Set(x+w, y, color.White)
			}
		}
	}
	stroke(6, 11)
	stroke(15, 11)
	stroke(14, 19)
	stroke(23, 19)
	var p bytes.Buffer
	_ = png.Encode(&p, img)
	var ico bytes.Buffer
	_ = binary.Write(&ico, binary.LittleEndian, [3]uint16{0, 1, 1}) // reserved, icon, one image
	ico.Write([]byte{n, n, 0, 0})                                   // width, height, colours, reserved
	_ = binary.Write(&ico, binary.LittleEndian, [2]uint16{1, 32})   // planes, bits per pixel
	_ = binary.Write(&ico, binary.LittleEndian, [2]uint32{uint32(p.Len()), 6 + 16})
	ico.Write(p.Bytes())
	return ico.Bytes()
})

// mountFavicon serves /favicon.ico, which browsers ask every page of the listener for.
func mountFavicon(e *echo.Echo) {
	e.GET("/favicon.ico", func(c echo.Context) error {
		c.Response().Header().Set("Cache-Control", "public, max-age=86400")
		return c.Blob(http.StatusOK, "image/x-icon", favicon())
	})
}
