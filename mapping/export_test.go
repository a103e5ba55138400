package mapping

// SetBounded turns the evaluation limits on or off for programs compiled afterwards, for the
// benchmark that measures their cost, and returns a function that restores the setting.
func SetBounded(on bool) (restore func()) {
	old := boundExpressions
	boundExpressions = on
	return func() { boundExpressions = old }
}
