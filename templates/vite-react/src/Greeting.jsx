export default function Greeting() {
  return <h1>Hello from React</h1>;
}
