package web

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"
)

// openAPI describes /api/v1. TestOpenAPICoversRoutes keeps it true.
//
//go:embed openapi.json
var openAPI []byte

func (s *Server) serveOpenAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/json", openAPI)
}
