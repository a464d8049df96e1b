package admin

import "net/http"

// table lists every endpoint. Each is an operation of openapi.yaml (the
// tests hold the two to each other) with the right it needs; authorize
// checks that right on the org in the path before the handler runs.
func (a *API) table() []Route {
	return []Route{
		{"GET", "/openapi.json", "getOpenAPI", NeedNone, a.openapi},
		{"GET", "/me", "getMe", NeedSelf, a.me},
		{"GET", "/me/sessions", "listMySessions", NeedSelf, a.mySessions},
		{"DELETE", "/me/sessions/{session}", "revokeMySession", NeedSelf, a.revokeMySession},

		{"GET", "/orgs", "listOrgs", NeedRead, a.listOrgs},
		{"POST", "/orgs", "createOrg", NeedWrite, a.createOrg},
		{"GET", "/orgs/{org}", "getOrg", NeedRead, a.getOrg},
		{"PATCH", "/orgs/{org}", "updateOrg", NeedWrite, a.updateOrg},
		{"DELETE", "/orgs/{org}", "deleteOrg", NeedWrite, a.deleteOrg},

		{"GET", "/orgs/{org}/users", "listUsers", NeedRead, a.listUsers},
		{"POST", "/orgs/{org}/users", "createUser", NeedWrite, a.createUser},
		{"GET", "/orgs/{org}/users/{user}", "getUser", NeedRead, a.getUser},
		{"PATCH", "/orgs/{org}/users/{user}", "updateUser", NeedWrite, a.updateUser},
		{"DELETE", "/orgs/{org}/users/{user}", "deleteUser", NeedWrite, a.deleteUser},
		{"DELETE", "/orgs/{org}/users/{user}/factors", "resetUserFactors", NeedWrite, a.resetFactors},
		{"GET", "/orgs/{org}/users/{user}/sessions", "listUserSessions", NeedRead, a.listUserSessions},
		{"DELETE", "/orgs/{org}/users/{user}/sessions", "revokeUserSessions", NeedWrite, a.revokeUserSessions},
		{"DELETE", "/orgs/{org}/sessions/{session}", "revokeSession", NeedWrite, a.revokeOrgSession},

		{"GET", "/orgs/{org}/invitations", "listInvitations", NeedRead, a.listInvitations},
		{"POST", "/orgs/{org}/invitations", "createInvitation", NeedWrite, a.createInvitation},
		{"GET", "/orgs/{org}/invitations/{invitation}", "getInvitation", NeedRead, a.getInvitation},
		{"DELETE", "/orgs/{org}/invitations/{invitation}", "revokeInvitation", NeedWrite, a.revokeInvitation},
		{"POST", "/orgs/{org}/invitations/{invitation}/resend", "resendInvitation", NeedWrite, a.resendInvitation},

		{"GET", "/orgs/{org}/tokens", "listOrgTokens", NeedRead, a.listOrgTokens},
		{"POST", "/orgs/{org}/tokens", "createOrgToken", NeedWrite, a.createOrgToken},
		{"GET", "/orgs/{org}/tokens/{token}", "getOrgToken", NeedRead, a.getOrgToken},
		{"DELETE", "/orgs/{org}/tokens/{token}", "revokeOrgToken", NeedWrite, a.revokeOrgToken},

		{"GET", "/orgs/{org}/connection", "getConnection", NeedRead, a.getConnection},
		{"PUT", "/orgs/{org}/connection", "setConnection", NeedWrite, a.setConnection},
		{"POST", "/orgs/{org}/connection/test", "testConnection", NeedWrite, a.testConnection},
		{"POST", "/orgs/{org}/connection/rotate-key", "rotateSAMLKey", NeedWrite, a.rotateKey},

		{"GET", "/orgs/{org}/domains", "listDomains", NeedRead, a.listDomains},
		{"POST", "/orgs/{org}/domains", "addDomain", NeedWrite, a.addDomain},
		{"DELETE", "/orgs/{org}/domains/{domain}", "removeDomain", NeedWrite, a.removeDomain},

		{"GET", "/orgs/{org}/branding", "getBranding", NeedRead, a.getBranding},
		{"PATCH", "/orgs/{org}/branding", "updateBranding", NeedWrite, a.updateBranding},
		{"DELETE", "/orgs/{org}/branding", "deleteBranding", NeedWrite, a.deleteBranding},
		{"PUT", "/orgs/{org}/branding/{asset}", "putBrandingFile", NeedWrite, a.putAsset},
		{"DELETE", "/orgs/{org}/branding/{asset}", "deleteBrandingFile", NeedWrite, a.deleteAsset},

		{"GET", "/orgs/{org}/notifications", "listTemplates", NeedRead, a.listTemplates},
		{"PUT", "/orgs/{org}/notifications/{kind}", "setTemplate", NeedWrite, a.setTemplate},
		{"DELETE", "/orgs/{org}/notifications/{kind}", "deleteTemplate", NeedWrite, a.deleteTemplate},

		{"GET", "/orgs/{org}/policy", "getPolicy", NeedRead, a.getPolicy},
		{"PUT", "/orgs/{org}/policy", "setPolicy", NeedWrite, a.setPolicy},
		{"DELETE", "/orgs/{org}/policy", "deletePolicy", NeedWrite, a.deletePolicy},

		{"GET", "/orgs/{org}/audit", "listAudit", NeedRead, a.listAudit},
		{"GET", "/orgs/{org}/audit/export", "exportAudit", NeedRead, a.exportAudit},
		{"GET", "/orgs/{org}/audit/webhook", "getAuditWebhook", NeedRead, a.getWebhook},
		{"PUT", "/orgs/{org}/audit/webhook", "setAuditWebhook", NeedWrite, a.setWebhook},
		{"DELETE", "/orgs/{org}/audit/webhook", "deleteAuditWebhook", NeedWrite, a.deleteWebhook},

		{"GET", "/audit", "listAllAudit", NeedPlatform, a.listAllAudit},

		{"GET", "/clients", "listClients", NeedPlatform, a.listClients},
		{"POST", "/clients", "createClient", NeedPlatform, a.createClient},
		{"GET", "/clients/{client}", "getClient", NeedPlatform, a.getClient},
		{"PATCH", "/clients/{client}", "updateClient", NeedPlatform, a.updateClient},
		{"DELETE", "/clients/{client}", "deleteClient", NeedPlatform, a.deleteClient},
		{"POST", "/clients/{client}/secret", "rotateClientSecret", NeedPlatform, a.rotateClientSecret},

		{"GET", "/tokens", "listPlatformTokens", NeedPlatform, a.listPlatformTokens},
		{"POST", "/tokens", "createPlatformToken", NeedPlatform, a.createPlatformToken},
		{"DELETE", "/tokens/{token}", "revokePlatformToken", NeedPlatform, a.revokePlatformToken},
	}
}

func (a *API) openapi(c *call) error {
	c.w.Header().Set("Content-Type", "application/json")
	c.w.Header().Set("Cache-Control", "public, max-age=300")
	c.w.WriteHeader(http.StatusOK)
	_, _ = c.w.Write(OpenAPI)
	return nil
}
