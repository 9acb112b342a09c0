// widgets/build.mjs loads .css files as text (the renderer injects the dashboard's styles).
declare module "*.css" {
  const text: string;
  export default text;
}
